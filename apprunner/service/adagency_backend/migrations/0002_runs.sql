-- Runs: long work (a LangGraph workflow) recorded by the API, queued on SQS, executed by the worker.
-- The graph's own state lives in langgraph-checkpoint-postgres's tables (created by the worker at start,
-- thread_id = run id); this table is what clients see.
CREATE TABLE runs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    brief       text NOT NULL CHECK (char_length(brief) BETWEEN 1 AND 4000),
    state       text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    error       text CHECK (char_length(error) <= 1000),
    result      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz,
    CHECK ((state IN ('succeeded', 'failed')) = (finished_at IS NOT NULL))
);
CREATE INDEX runs_project_id_idx ON runs (project_id, created_at DESC);

-- Idempotent events: a worker that repeats a step after a crash appends its event again with the same key
-- (run id + step), and the second insert does nothing. Events without a key (the API's) are unaffected.
ALTER TABLE project_events ADD COLUMN idempotency_key text CHECK (char_length(idempotency_key) <= 200);
ALTER TABLE project_events ADD CONSTRAINT project_events_idempotency_key_key UNIQUE (project_id, idempotency_key);
