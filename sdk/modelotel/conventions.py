"""Every metric name, attribute key, unit and bucket choice modelotel emits, in one place.

No OpenTelemetry semantic convention exists for classic ML inference yet (semantic-conventions #3420),
so we use an ``ml.*`` namespace whose attribute values follow the prior art: MLServer/Triton
(model name and version labels), Arize (prediction label and score), alibi-detect (outlier flag and
instance score). HTTP and RPC metrics reuse OTel's stable names.

``docs/semantic-conventions.md`` documents this module; keep the two in step.
"""

from __future__ import annotations

from typing import Final

# -- attribute keys -------------------------------------------------------------------------------

MODEL_NAME: Final = "ml.model.name"
MODEL_VERSION: Final = "ml.model.version"
DEPLOYMENT_ROLE: Final = "ml.deployment.role"
ERROR_TYPE: Final = "error.type"  # OTel general attribute: exception class name on failure
PREDICTION_ID: Final = "ml.prediction.id"
PREDICTION_LABEL: Final = "ml.prediction.label"
PREDICTION_CONFIDENCE: Final = "ml.prediction.confidence"
FEATURES_HASH: Final = "ml.features.hash"
FEATURES_MISSING: Final = "ml.features.missing"
FEATURE_NAME: Final = "ml.feature.name"
FEATURE_CATEGORY: Final = "ml.feature.category"
FEATURE_PREFIX: Final = "ml.feature."  # span attributes of allow-listed raw features
BATCH_SIZE: Final = "ml.batch.size"
OOD_SCORE: Final = "ml.ood.score"
OOD_IS_OUTLIER: Final = "ml.ood.is_outlier"
STREAM_ITEMS: Final = "ml.stream.items"
FEEDBACK_CORRECT: Final = "ml.feedback.correct"
FEEDBACK_LABEL: Final = "ml.feedback.label"
# Fairness (opt-in, on ml.feedback only): a group the caller names at feedback time, never a raw feature, and
# whether the predicted and the true label are the configured positive class (selection rate, TPR, FPR).
FAIRNESS_GROUP: Final = "ml.fairness.group"
PREDICTION_POSITIVE: Final = "ml.prediction.positive"
FEEDBACK_POSITIVE: Final = "ml.feedback.positive"
# On feedback series: the end (epoch seconds) of the time bucket the judged prediction was made in, so a window's
# figures count the predictions made in it whenever their labels arrive (docs/quality.md).
PREDICTION_TIME_BUCKET_END: Final = "ml.prediction.time_bucket_end"
OVERFLOW: Final = "otel.metric.overflow"  # OTel SDK's attribute for the cardinality-overflow series
INTERNAL_ERROR_KIND: Final = "modelotel.error.kind"
DROP_REASON: Final = "modelotel.drop.reason"

# Server request attributes: OTel's stable HTTP semantic conventions (semconv 1.26+), RPC ones as of semconv 1.37+.
HTTP_METHOD: Final = "http.request.method"
HTTP_METHOD_ORIGINAL: Final = "http.request.method_original"  # the raw method when it is not a known one
HTTP_ROUTE: Final = "http.route"
HTTP_STATUS: Final = "http.response.status_code"
URL_SCHEME: Final = "url.scheme"
URL_PATH: Final = "url.path"
PROTOCOL_VERSION: Final = "network.protocol.version"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
CLIENT_ADDRESS: Final = "client.address"
USER_AGENT: Final = "user_agent.original"
RPC_SYSTEM: Final = "rpc.system.name"
RPC_METHOD: Final = "rpc.method"
RPC_STATUS: Final = "rpc.response.status_code"
CLIENT_DISCONNECT_EVENT: Final = "http.client_disconnect"  # span event: the client left before the response ended

# GenAI semantic conventions (Development status): the attributes of the gen_ai.server.* metrics of streams.
GENAI_OPERATION: Final = "gen_ai.operation.name"  # chat, text_completion, generate_content, ...
GENAI_PROVIDER: Final = "gen_ai.provider.name"  # latest experimental conventions (OTEL_SEMCONV_STABILITY_OPT_IN)
GENAI_SYSTEM: Final = "gen_ai.system"  # the same value under its v1.36.0-and-before key: the default
GENAI_REQUEST_MODEL: Final = "gen_ai.request.model"
GENAI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GENAI_TOKEN_TYPE: Final = "gen_ai.token.type"  # input or output, on ml.genai.tokens
GENAI_TOKEN_TYPES: Final = ("input", "output")

# The OTel ``exception`` span event and its attributes (semantic conventions for exceptions).
EXCEPTION_EVENT: Final = "exception"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"

# Resource attributes modelotel sets (OTel resource semantic conventions).
SERVICE_NAME: Final = "service.name"
SERVICE_INSTANCE_ID: Final = "service.instance.id"  # a fresh UUID per process (and per forked child)

DEPLOYMENT_ROLES: Final = ("primary", "canary", "shadow")
UNKNOWN_VERSION: Final = "unknown"
OTHER_LABEL: Final = "__other__"  # predicted labels beyond the per-model cap

# -- metric names ---------------------------------------------------------------------------------

INFERENCE_DURATION: Final = "ml.inference.duration"
INFERENCE_TIME_TO_FIRST_ITEM: Final = "ml.inference.time_to_first_item"
PREDICTION_CONFIDENCE_METRIC: Final = "ml.prediction.confidence"
OOD_SCORE_METRIC: Final = "ml.ood.score"
OOD_OUTLIERS: Final = "ml.ood.outliers"
PREDICTIONS: Final = "ml.predictions"
FEATURES_MISSING_METRIC: Final = "ml.features.missing"
FEEDBACK: Final = "ml.feedback"
FEEDBACK_CONFIDENCE: Final = "ml.feedback.confidence"
FEEDBACK_DELAY: Final = "ml.feedback.delay"
FEEDBACK_ABS_ERROR: Final = "ml.feedback.abs_error"
FEEDBACK_SQUARED_ERROR: Final = "ml.feedback.squared_error"
FEATURE_VALUE: Final = "ml.feature.value"
FEATURE_CATEGORY_METRIC: Final = "ml.feature.category"
EXTRACT_MISSES: Final = "modelotel.extract.misses"
HTTP_SERVER_DURATION: Final = "http.server.request.duration"  # OTel stable HTTP semantic conventions
RPC_SERVER_DURATION: Final = "rpc.server.call.duration"  # OTel RPC semantic conventions
# GenAI model-server metrics (semantic conventions, Development status), recorded for streams of models given genai=
GENAI_SERVER_REQUEST_DURATION: Final = "gen_ai.server.request.duration"
GENAI_SERVER_TIME_TO_FIRST_TOKEN: Final = "gen_ai.server.time_to_first_token"
GENAI_SERVER_TIME_PER_OUTPUT_TOKEN: Final = "gen_ai.server.time_per_output_token"
GENAI_TOKENS: Final = "ml.genai.tokens"  # per-stream token counts (the conventions define no server token metric)
# Dynamic batching (BatchTimer / AsyncBatcher): Triton's nv_inference_queue_duration_us and compute-infer time, and
# the batch size KServe #4645, MLServer #39 and Ray #48184 ask for; ml.inference.duration stays one value per request.
BATCH_QUEUE_DURATION: Final = "ml.batch.queue.duration"
BATCH_EXECUTION_DURATION: Final = "ml.batch.execution.duration"
BATCH_SIZE_METRIC: Final = "ml.batch.size"  # the same name as the span attribute BATCH_SIZE
INTERNAL_ERRORS: Final = "modelotel.internal.errors"
DROPPED: Final = "modelotel.dropped"

# -- units (UCUM, as OTel uses them) --------------------------------------------------------------

SECONDS: Final = "s"
DIMENSIONLESS: Final = "1"
PREDICTION_UNIT: Final = "{prediction}"
FEATURE_UNIT: Final = "{feature}"
FEEDBACK_UNIT: Final = "{feedback}"
ERROR_UNIT: Final = "{error}"
VALUE_UNIT: Final = "{value}"
TOKEN_UNIT: Final = "{token}"
REQUEST_UNIT: Final = "{request}"

# -- sketch / exponential histogram choices -------------------------------------------------------

DEFAULT_SCALE: Final = 5  # relative accuracy (2**2**-5 - 1) / (2**2**-5 + 1) = 1.08%
DEFAULT_MAX_BUCKETS: Final = 1024  # per sign; at scale 5 covers a 2**32 range before downscaling
MIN_EXPORT_SCALE: Final = -4  # Datadog and Prometheus accept scales -4..8
MAX_EXPORT_SCALE: Final = 8
DEFAULT_MAX_SERIES: Final = 2000  # per metric, then the overflow series
DEFAULT_MAX_LABELS: Final = 100  # distinct predicted labels per model, then OTHER_LABEL
DEFAULT_MAX_CATEGORIES: Final = 50  # distinct values per categorical feature, then OTHER_LABEL
DEFAULT_MAX_GROUPS: Final = 20  # distinct ml.fairness.group values per model, then OTHER_LABEL
DEFAULT_MAX_CONFUSION_LABELS: Final = 20  # distinct predicted/true labels on feedback series, then OTHER_LABEL
MAX_GROUP_LENGTH: Final = 64  # longer group values become OTHER_LABEL (a group is a category, not an id)
DEFAULT_MAX_EXTRA_ATTRIBUTES: Final = 8

INSTRUMENTATION_SCOPE: Final = "modelotel"


class MetricSpec:
    """Name, instrument kind, unit and description of one exported metric."""

    __slots__ = ("name", "kind", "unit", "description")

    def __init__(self, name: str, kind: str, unit: str, description: str) -> None:
        self.name = name
        self.kind = kind  # "histogram" (exponential) or "counter" (monotonic sum)
        self.unit = unit
        self.description = description

    def __repr__(self) -> str:
        return f"MetricSpec({self.name!r}, {self.kind!r}, {self.unit!r})"


METRICS: Final = {
    spec.name: spec
    for spec in (
        MetricSpec(INFERENCE_DURATION, "histogram", SECONDS, "Duration of one model inference call."),
        MetricSpec(
            INFERENCE_TIME_TO_FIRST_ITEM,
            "histogram",
            SECONDS,
            "Time from call to first item for streaming (generator) models.",
        ),
        MetricSpec(
            PREDICTION_CONFIDENCE_METRIC,
            "histogram",
            DIMENSIONLESS,
            "Confidence of each prediction (max class probability unless configured).",
        ),
        MetricSpec(OOD_SCORE_METRIC, "histogram", DIMENSIONLESS, "Out-of-distribution score per prediction."),
        MetricSpec(OOD_OUTLIERS, "counter", PREDICTION_UNIT, "Predictions whose OOD score exceeded the threshold."),
        MetricSpec(PREDICTIONS, "counter", PREDICTION_UNIT, "Predictions made, by predicted label."),
        MetricSpec(FEATURES_MISSING_METRIC, "counter", FEATURE_UNIT, "Missing (None or NaN) input features."),
        MetricSpec(
            FEEDBACK,
            "counter",
            FEEDBACK_UNIT,
            "Ground-truth feedback received, by correctness and prediction time bucket (and predicted/true label, "
            "opt-in fairness group and positive-class flags).",
        ),
        MetricSpec(
            FEEDBACK_CONFIDENCE,
            "histogram",
            DIMENSIONLESS,
            "Confidence of predictions that received feedback, by correctness (calibration).",
        ),
        MetricSpec(
            FEEDBACK_DELAY,
            "histogram",
            SECONDS,
            "Time from a prediction to its feedback (label latency).",
        ),
        MetricSpec(
            FEEDBACK_ABS_ERROR,
            "histogram",
            DIMENSIONLESS,
            "Absolute error of regression predictions that received feedback (in the model's output unit).",
        ),
        MetricSpec(
            FEEDBACK_SQUARED_ERROR,
            "histogram",
            DIMENSIONLESS,
            "Squared error of regression predictions that received feedback (its sum over count is the MSE).",
        ),
        MetricSpec(
            FEATURE_VALUE,
            "histogram",
            DIMENSIONLESS,
            "Distribution of an allow-listed numeric feature (bucket counts only; min/max coarsened to buckets).",
        ),
        MetricSpec(
            FEATURE_CATEGORY_METRIC, "counter", VALUE_UNIT, "Values of an allow-listed categorical feature, bounded."
        ),
        MetricSpec(
            EXTRACT_MISSES,
            "counter",
            PREDICTION_UNIT,
            "Outputs whose shape gave no confidence (not counting plain numbers, which are regression outputs).",
        ),
        MetricSpec(HTTP_SERVER_DURATION, "histogram", SECONDS, "Duration of HTTP server requests."),
        MetricSpec(RPC_SERVER_DURATION, "histogram", SECONDS, "Duration of RPC server calls."),
        MetricSpec(
            GENAI_SERVER_REQUEST_DURATION,
            "histogram",
            SECONDS,
            "Duration of one generation stream, from the call to its last item (GenAI semantic conventions).",
        ),
        MetricSpec(
            GENAI_SERVER_TIME_TO_FIRST_TOKEN,
            "histogram",
            SECONDS,
            "Time from the call to the first output token of a successful stream (GenAI semantic conventions).",
        ),
        MetricSpec(
            GENAI_SERVER_TIME_PER_OUTPUT_TOKEN,
            "histogram",
            SECONDS,
            "Per successful stream: (request duration - time to first token) / (output tokens - 1).",
        ),
        MetricSpec(GENAI_TOKENS, "histogram", TOKEN_UNIT, "Input and output tokens per successful stream."),
        MetricSpec(
            BATCH_QUEUE_DURATION,
            "histogram",
            SECONDS,
            "Per request of a batched model: from joining the queue to the start of its batch.",
        ),
        MetricSpec(
            BATCH_EXECUTION_DURATION,
            "histogram",
            SECONDS,
            "Per batch of a batched model: the batched predict's execution time.",
        ),
        MetricSpec(BATCH_SIZE_METRIC, "histogram", REQUEST_UNIT, "Per batch of a batched model: requests in it."),
        MetricSpec(INTERNAL_ERRORS, "counter", ERROR_UNIT, "Errors inside modelotel, by kind (never raised)."),
        MetricSpec(DROPPED, "counter", VALUE_UNIT, "Values modelotel dropped, by reason."),
    )
}
