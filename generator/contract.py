"""The app contract: what the backend stack hands the container, and nothing else.

The backend stack renders exactly these names; the reference service under apprunner/ reads
exactly these names; the contract test reads them back out of the rendered template.
"""

# Plain (non-secret) environment variables
ENVIRONMENT = "APP_ENVIRONMENT"          # dev | prod | ...
REGION = "APP_REGION"                    # AWS region for SDK clients
DB_HOST = "DB_HOST"                      # Aurora writer endpoint
DB_PORT = "DB_PORT"
DB_NAME = "DB_NAME"
DB_SECRET_ARN = "DB_SECRET_ARN"          # Aurora-managed master secret; read at runtime (rotates every 7 days)
DB_SSLMODE = "DB_SSLMODE"                # libpq sslmode; the cluster refuses non-TLS connections
CONTENT_BUCKET = "CONTENT_BUCKET"        # S3 bucket for uploads (presigned URLs)
CORS_ALLOWED_ORIGINS = "CORS_ALLOWED_ORIGINS"  # comma-separated https origins of the frontend
SSE_MAX_STREAM_SECONDS = "SSE_MAX_STREAM_SECONDS"  # each SSE response ends before App Runner's 120 s limit

PLAIN_VARIABLES = (ENVIRONMENT, REGION, DB_HOST, DB_PORT, DB_NAME, DB_SECRET_ARN, DB_SSLMODE, CONTENT_BUCKET,
                   CORS_ALLOWED_ORIGINS, SSE_MAX_STREAM_SECONDS)

# Static secrets injected by App Runner (RuntimeEnvironmentSecrets, value = secret ARN; read at deploy time)
GEMINI_API_KEY = "GEMINI_API_KEY"
SECRET_VARIABLES = (GEMINI_API_KEY,)

# Workers (durable LangGraph runs): the API enqueues a run's id, the worker service runs it.
# The worker is the backend image started with the command `worker` (`python -m adagency_backend worker`).
RUN_QUEUE_URL = "RUN_QUEUE_URL"          # SQS queue URL of runs; the API sends (SendMessage), the worker receives
WORKER_VISIBILITY_TIMEOUT_SECONDS = "WORKER_VISIBILITY_TIMEOUT_SECONDS"  # the queue's visibility timeout (2-43200);
#                                          the worker receives with it and extends it every third of it while working
WORKER_STOP_TIMEOUT_SECONDS = "WORKER_STOP_TIMEOUT_SECONDS"  # SIGTERM grace (1-120, = the container's stopTimeout)
WORKER_MAX_RECEIVE_COUNT = "WORKER_MAX_RECEIVE_COUNT"  # the redrive policy's maxReceiveCount (1-1000): on that
#                                          receive a failing run is recorded failed and left for the dead-letter queue
WORKER_COMMAND = ("worker",)             # container command (the image's ENTRYPOINT is `python -m adagency_backend`)

RUNS_API_VARIABLES = (RUN_QUEUE_URL,)    # what the API needs besides PLAIN_VARIABLES to accept runs
WORKER_VARIABLES = (ENVIRONMENT, REGION, DB_HOST, DB_PORT, DB_NAME, DB_SECRET_ARN, DB_SSLMODE, CONTENT_BUCKET,
                    RUN_QUEUE_URL, WORKER_VISIBILITY_TIMEOUT_SECONDS, WORKER_STOP_TIMEOUT_SECONDS,
                    WORKER_MAX_RECEIVE_COUNT)
WORKER_SECRETS = (GEMINI_API_KEY,)       # ECS `Secrets` by ARN, resolved when a task starts

# Set by App Runner from the service's port; reserved, never in RuntimeEnvironmentVariables
PORT = "PORT"
HEALTH_PATH = "/healthz"

# Release contract: the backend image is promoted by an immutable tag (the commit SHA), never `latest`.
IMAGE_TAG_PARAMETER = "ImageTag"
IMAGE_TAG_PATTERN = r"^(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
