"""The options of ``@instrument_model``, defined once.

``ModelOptions`` is the one definition: ``instrument_model``'s keywords (same names, order, defaults
and annotations; its signature stays written out for IDEs and type checkers, and
tests/sdk/test_instrument_options.py fails when the two differ), the re-decoration cache key
(``ModelOptions.values``), what the per-model state reads (``decorator.Instrumented``) and the table
in docs/instrumentation.md (checked by the same test) all follow it. ``resolve`` checks them at
decoration time and fixes what that moment decides (the role from the environment, the trace mode).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import modelotel.config as config
import modelotel.conventions as conv

from ..ood import OODScorer
from .genai import GenAI, check_genai


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """``@instrument_model(...)``'s options; the first two may be positional, the rest are keywords."""

    name: str | Callable[..., Any] | None = None  # ml.model.name (default: the function's qualified name)
    version: str | None = None  # ml.model.version (default: "unknown")
    deployment_role: str | None = None  # primary, canary or shadow (default: MODELOTEL_DEPLOYMENT_ROLE)
    confidence: Callable[[Any], Any] | None = None  # callable on the output (default: extracted)
    label: Callable[[Any], Any] | None = None  # callable on the output (default: extracted)
    labels: Sequence[Any] | None = None  # class names by class index
    softmax: bool = False  # the output is logits
    extract_outputs: bool = True  # False: no automatic extraction (regression models)
    ood: Any = None  # callable on the features, or a scorer with score(X)
    ood_threshold: float | None = None  # scores above it are outliers (default: the scorer's threshold)
    features: Any = None  # index, parameter name, callable(*args, **kwargs) or False
    count_missing: bool = True  # count None/NaN feature values
    hash_features: bool = True  # the keyed feature hash on spans
    raw_features: Sequence[str] = ()  # feature names whose raw values may go on spans
    feature_names: Sequence[str] | None = None  # the model's features, by position or name
    attributes: Mapping[str, Any] | None = None  # up to 8 static extra metric attributes
    traces: bool | str | None = None  # "span", "enrich" or "off" for this model (default: the process's)
    max_labels: int = conv.DEFAULT_MAX_LABELS  # distinct labels before __other__
    numeric_features: Sequence[str] = ()  # features whose distributions are exported (sketches)
    categorical_features: Sequence[str] = ()  # features whose distributions are exported (bounded counts)
    free_text_labels: bool = False  # export any string output as a label (scrubbed, capped)
    # the positive class of a binary model: fairness flags on feedback, and ml.prediction.confidence by predicted
    # label (CBPE's precision/recall/F1 before labels arrive)
    positive_label: Any = None
    genai: GenAI | None = None  # GenAI(provider=...): gen_ai.server.* metrics of a generator model's streams
    # the function takes a batch of queued requests: its calls are not timed, the requests are (predict.batch(tickets))
    batched: bool = False

    def values(self) -> tuple[Any, ...]:
        """Every option's value, in definition order (the re-decoration cache key is made of these)."""
        return tuple(getattr(self, name) for name in OPTION_NAMES)


OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelOptions))
POSITIONAL = ("name", "version")  # instrument_model's only positional-or-keyword parameters


def resolve(options: ModelOptions) -> ModelOptions:
    """The options checked (``ConfigError`` naming a bad one), with what decoration time decides filled in.

    ``deployment_role`` becomes the role (the environment's default when not given), ``attributes``
    a checked plain dict, ``traces`` the trace mode (or None: the process's mode applies).
    """
    role = config.check_role(options.deployment_role) if options.deployment_role else config.default_role()
    extra = check_attributes(options.attributes)
    trace_mode = config.trace_mode_of(options.traces) if options.traces is not None else None
    check_genai(options.genai)
    if not isinstance(options.batched, bool):
        raise config.ConfigError(f"batched={options.batched!r}: True or False")
    if options.batched and options.genai is not None:
        raise config.ConfigError("batched=True and genai= do not go together: a batched predict is not a token stream")
    ood = options.ood
    if ood is not None and not (callable(ood) or hasattr(ood, "score")):
        raise config.ConfigError(f"ood={ood!r}: pass a callable or a scorer with score(X)")
    for opt_name, opt in (("confidence", options.confidence), ("label", options.label)):
        if opt is not None and not callable(opt):
            raise config.ConfigError(f"{opt_name}={opt!r} must be a callable on the model output")
    check_feature_options(
        options.feature_names, options.numeric_features, options.categorical_features, options.raw_features, ood
    )
    return dataclasses.replace(options, deployment_role=role, attributes=extra, traces=trace_mode)


def check_feature_options(
    feature_names: Sequence[str] | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
    raw: Sequence[str],
    ood: Any,
) -> None:
    """Feature configurations that could never resolve, refused when the function is decorated."""
    for opt_name, opt in (
        ("feature_names", feature_names),
        ("numeric_features", numeric),
        ("categorical_features", categorical),
        ("raw_features", raw),
    ):
        if isinstance(opt, (str, bytes)):  # list("amount") would silently configure six one-letter features
            raise config.ConfigError(f"{opt_name}={opt!r}: pass a list of names, not one string")
    if feature_names is None:
        return
    names = list(feature_names)
    repeated = sorted(str(n) for n, k in Counter(names).items() if k > 1)
    if repeated:
        raise config.ConfigError(f"feature_names: {', '.join(repeated)} listed more than once")
    listed = set(names)
    for opt_name, opt in (("numeric_features", numeric), ("categorical_features", categorical)):
        unknown = [n for n in opt or () if n not in listed]
        if unknown:
            # with feature_names, array inputs can only place the features it lists
            raise config.ConfigError(f"{opt_name}: {unknown!r} not in feature_names={names!r}")
    if isinstance(ood, OODScorer) and ood.input == "features":
        width = ood.n_features_
        if width is not None and width != len(names):
            raise config.ConfigError(
                f"ood: the scorer was fitted on {width} features but feature_names lists {len(names)}"
            )


def check_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """The static extra attributes as a plain dict: at most ``DEFAULT_MAX_EXTRA_ATTRIBUTES``, str keys, scalars."""
    if not attributes:
        return {}
    if len(attributes) > conv.DEFAULT_MAX_EXTRA_ATTRIBUTES:
        raise config.ConfigError(
            f"attributes: at most {conv.DEFAULT_MAX_EXTRA_ATTRIBUTES} static attributes, got {len(attributes)}"
        )
    out = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not isinstance(value, (str, bool, int, float)):
            raise config.ConfigError(f"attributes[{key!r}]={value!r}: keys are str, values str/bool/int/float")
        out[key] = value
    return out
