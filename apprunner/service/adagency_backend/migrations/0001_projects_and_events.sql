-- Projects and their event log. Events are the source of truth for SSE: streams replay id > Last-Event-ID.
CREATE TABLE projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 120),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_created_at_idx ON projects (created_at DESC, id DESC);

CREATE TABLE project_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    type        text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX project_events_project_id_idx ON project_events (project_id, id);
