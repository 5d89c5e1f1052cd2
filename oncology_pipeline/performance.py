"""Realised performance: the service's prediction log joined to confirmed diagnoses, per model version.

Malignant is the positive class. Each rate (sensitivity = realised recall, specificity, precision) comes with its
95 % Wilson score interval; a rate of no cases has no value and no interval. The joined cases are also what the
nightly training adds (`joined_cases`). The deploy verification's records (`predictionlog.is_verification`) are
counted per model version and set aside: they are in no figure about real traffic. Requests the service refused as
invalid are logged without their body (`LoggedRefusal`) and only counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from scipy.stats import binomtest

from oncology_model.datamodel import Prediction, Tumor
from oncology_model.predictionlog import REQUEST_ID, case_id
from oncology_pipeline.outcomes import Outcome
from oncology_pipeline.predictionlog import is_verification

CONFIDENCE_LEVEL = 0.95
INTERVAL = "95 % Wilson score interval (scipy.stats.binomtest(k, n).proportion_ci(method='wilson'))"
#: The cells of a joined case's row (`JoinedCase.row`).
#: Log problems kept as messages (the counts hold them all).
MAX_LOG_PROBLEMS = 20


class LoggedPrediction(BaseModel):
    """One record of the prediction log: one answered prediction (a batch request logs one per row)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: Annotated[str, Field(pattern=f"^{REQUEST_ID.pattern}$")]
    row: Annotated[int, Field(ge=0, strict=True)] | None = Field(description="index within a batch request")
    time: AwareDatetime
    model_version: Annotated[str, Field(min_length=1)]
    image_digest: str | None
    features: Tumor
    prediction: Prediction
    probability_malignant: Annotated[float, Field(ge=0, le=1)]

    @property
    def case_id(self) -> str:
        """`request_id`, or `request_id/row` for a row of a batch."""
        return case_id(self.request_id, self.row)


class LoggedRefusal(BaseModel):
    """One record of a request the service refused as invalid (HTTP 400 or 422), logged without its body."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: Annotated[str, Field(pattern=f"^{REQUEST_ID.pattern}$")]
    time: AwareDatetime
    model_version: Annotated[str, Field(min_length=1)]
    refused: Literal[400, 422] = Field(description="the HTTP status the service answered")


@dataclass(frozen=True)
class LoggedCases:
    """The valid records of a prediction log, one per case id, and what was left out."""

    cases: dict[str, LoggedPrediction] = field(default_factory=dict)  # the earliest record of each case
    served: dict[str, int] = field(default_factory=dict)  # model version -> distinct cases it answered
    verification: dict[str, int] = field(default_factory=dict)  # model version -> verification records set aside
    refusals: tuple[LoggedRefusal, ...] = ()  # requests refused as invalid (real traffic's only)
    records: int = 0
    invalid: int = 0
    repeated: int = 0  # records of a case id already read
    ambiguous: frozenset[str] = frozenset()  # case ids logged with different versions, scores or answers
    problems: tuple[str, ...] = ()  # the first invalid records, "record <n>: <field>: <rule>"

    def prediction_times(self) -> dict[str, datetime]:
        """When each case was predicted (its earliest record): what `read_outcomes` checks outcomes against."""
        return {case: record.time for case, record in self.cases.items()}


def logged_cases(records: Iterable[Mapping[str, Any]]) -> LoggedCases:
    """Validate the log's records (dicts of its JSON lines); invalid ones are counted and listed, never used. The
    deploy verification's records are counted per model version, not used (`cases` and `served` leave them out);
    refusal records (those with `refused`) are kept apart in `refusals`.

    A case id logged more than once (a client reusing a request id) counts once; when its records disagree on the
    model version, the scores or the answer, the case is ambiguous and left out of the join."""
    cases: dict[str, LoggedPrediction] = {}
    answers: dict[str, set[tuple[str, Tumor, Prediction]]] = {}
    served: dict[str, set[str]] = {}
    verification: Counter[str] = Counter()
    refusals: list[LoggedRefusal] = []
    problems: list[str] = []
    count = invalid = repeated = 0
    for count, raw in enumerate(records, start=1):
        try:
            if "refused" in raw:
                refusal = LoggedRefusal.model_validate(raw)
                if not is_verification(refusal.request_id):
                    refusals.append(refusal)
                continue
            record = LoggedPrediction.model_validate(raw)
        except ValidationError as exc:
            invalid += 1
            if len(problems) < MAX_LOG_PROBLEMS:
                error = exc.errors()[0]
                where = ".".join(str(part) for part in error["loc"]) or "record"
                problems.append(f"record {count}: {where}: {error['msg']}")
            continue
        case = record.case_id
        if is_verification(case):
            verification[record.model_version] += 1
            continue
        served.setdefault(record.model_version, set()).add(case)
        answers.setdefault(case, set()).add((record.model_version, record.features, record.prediction))
        earlier = cases.get(case)
        if earlier is not None:
            repeated += 1
        if earlier is None or record.time < earlier.time:
            cases[case] = record
    return LoggedCases(
        cases=cases,
        served={version: len(ids) for version, ids in sorted(served.items())},
        verification=dict(sorted(verification.items())),
        refusals=tuple(refusals),
        records=count,
        invalid=invalid,
        repeated=repeated,
        ambiguous=frozenset(case for case, seen in answers.items() if len(seen) > 1),
        problems=tuple(problems),
    )


class Rate(BaseModel):
    """A proportion k of n with its 95 % Wilson score interval; value and bounds are None when n is 0."""

    successes: int
    trials: int
    value: float | None
    ci_low: float | None
    ci_high: float | None


def wilson_rate(successes: int, trials: int) -> Rate:
    """k of n with its 95 % Wilson score interval (scipy)."""
    if trials == 0:
        return Rate(successes=0, trials=0, value=None, ci_low=None, ci_high=None)
    interval = binomtest(successes, trials).proportion_ci(confidence_level=CONFIDENCE_LEVEL, method="wilson")
    return Rate(
        successes=successes,
        trials=trials,
        value=successes / trials,
        ci_low=float(interval.low),
        ci_high=float(interval.high),
    )


class VersionPerformance(BaseModel):
    """One model version's realised performance on the cases confirmed so far (malignant is positive)."""

    model_version: str
    served: int = Field(description="distinct cases it answered in the window (verification requests aside)")
    verification_records: int = Field(
        description="records of the deploy verification's requests (X-Request-ID verify-...), set aside: not "
        "served, joined, labelled or watched for drift"
    )
    confirmed: int = Field(description="of those, cases with a confirmed diagnosis")
    confirmed_share: float
    tp: int
    fn: int
    tn: int
    fp: int
    sensitivity: Rate = Field(description="realised recall: tp / (tp + fn)")
    specificity: Rate = Field(description="tn / (tn + fp)")
    precision: Rate = Field(description="tp / (tp + fp)")
    hours_to_outcome_median: float | None
    hours_to_outcome_p90: float | None
    recall_alarm: bool = False


class Performance(BaseModel):
    """The monitor's result (performance.json): per model version, over one window of the prediction log."""

    window_start: datetime
    window_end: datetime
    generated_at: datetime
    interval: str = INTERVAL
    min_recall: float = Field(description="the recall alarm's threshold")
    min_malignant: int = Field(description="confirmed malignant cases before the recall alarm may fire")
    records: int = Field(description="prediction log records read")
    invalid_records: int
    repeated_records: int
    ambiguous_cases: int = Field(description="case ids logged with different answers: not joined")
    outcomes_joined: int
    outcomes_not_joined: int = Field(description="outcomes of ambiguous cases or of cases not in the log")
    versions: list[VersionPerformance]

    @property
    def alarms(self) -> list[str]:
        """The model versions whose realised recall alarms."""
        return [v.model_version for v in self.versions if v.recall_alarm]


def recall_alarm(version_perf: VersionPerformance, min_recall: float, min_malignant: int) -> bool:
    """True when at least `min_malignant` malignant cases are confirmed and even the upper bound of the 95 % Wilson
    interval of realised recall is below `min_recall`.

    The Wilson interval inverts the score test, so this is a one-sided test at 2.5 % of "true recall >= min_recall":
    a version whose true recall is exactly `min_recall` raises the alarm in about 2.5 % of evaluations (fewer when
    it is higher); each evaluation of an unchanged model spends that rate again."""
    rate = version_perf.sensitivity
    return rate.trials >= min_malignant and rate.ci_high is not None and rate.ci_high < min_recall


def _joined(log: LoggedCases, outcomes: Mapping[str, Outcome]) -> list[tuple[LoggedPrediction, Outcome]]:
    """The cases with a logged prediction and a confirmed diagnosis, by prediction time then case id."""
    pairs = [
        (log.cases[case], outcome)
        for case, outcome in outcomes.items()
        if case in log.cases and case not in log.ambiguous
    ]
    return sorted(pairs, key=lambda pair: (pair[0].time, pair[1].case_id))


def _version(
    version: str, served: int, verification: int, pairs: list[tuple[LoggedPrediction, Outcome]]
) -> VersionPerformance:
    counts = Counter(
        (record.prediction is Prediction.MALIGNANT, outcome.diagnosis is Prediction.MALIGNANT)
        for record, outcome in pairs
    )
    tp, fn, tn, fp = counts[True, True], counts[False, True], counts[False, False], counts[True, False]
    hours = [(outcome.confirmed_at - record.time).total_seconds() / 3600 for record, outcome in pairs]
    return VersionPerformance(
        model_version=version,
        served=served,
        verification_records=verification,
        confirmed=len(pairs),
        confirmed_share=len(pairs) / served if served else 0.0,
        tp=tp,
        fn=fn,
        tn=tn,
        fp=fp,
        sensitivity=wilson_rate(tp, tp + fn),
        specificity=wilson_rate(tn, tn + fp),
        precision=wilson_rate(tp, tp + fp),
        hours_to_outcome_median=float(np.median(hours)) if hours else None,
        hours_to_outcome_p90=float(np.percentile(hours, 90)) if hours else None,
    )


def measure_performance(
    log: LoggedCases,
    outcomes: Mapping[str, Outcome],
    *,
    window_start: datetime,
    window_end: datetime,
    generated_at: datetime,
    min_recall: float,
    min_malignant: int,
) -> Performance:
    """Each model version's realised performance on the confirmed cases, with the recall alarm decided.

    Args:
        log: the prediction log of the window (`logged_cases`).
        outcomes: confirmed diagnoses by case id (`read_outcomes`).
        window_start: the start of the window the log covers.
        window_end: its end.
        generated_at: when this result is made.
        min_recall: the realised recall below which a version alarms (see `recall_alarm`).
        min_malignant: confirmed malignant cases a version needs before it may alarm.
    """
    if window_end < window_start:
        raise ValueError(f"window_end {window_end.isoformat()} is before window_start {window_start.isoformat()}")
    pairs = _joined(log, outcomes)
    by_version: dict[str, list[tuple[LoggedPrediction, Outcome]]] = {v: [] for v in log.served | log.verification}
    for record, outcome in pairs:
        by_version[record.model_version].append((record, outcome))
    versions = []
    for version in sorted(by_version):
        perf = _version(version, log.served.get(version, 0), log.verification.get(version, 0), by_version[version])
        versions.append(perf.model_copy(update={"recall_alarm": recall_alarm(perf, min_recall, min_malignant)}))
    return Performance(
        window_start=window_start,
        window_end=window_end,
        generated_at=generated_at,
        min_recall=min_recall,
        min_malignant=min_malignant,
        records=log.records,
        invalid_records=log.invalid,
        repeated_records=log.repeated,
        ambiguous_cases=len(log.ambiguous),
        outcomes_joined=len(pairs),
        outcomes_not_joined=len(outcomes) - len(pairs),
        versions=versions,
    )


@dataclass(frozen=True)
class JoinedCase:
    """A logged prediction with its confirmed diagnosis, as training data: the case id, the nine scores and the
    confirmed class (2 benign, 4 malignant)."""

    case_id: str
    features: dict[str, int]
    diagnosis: int


def joined_cases(log: LoggedCases, outcomes: Mapping[str, Outcome]) -> list[JoinedCase]:
    """The joined cases (those `measure_performance` counts), by prediction time then case id."""
    return [
        JoinedCase(case_id=outcome.case_id, features=record.features.model_dump(), diagnosis=outcome.class_code)
        for record, outcome in _joined(log, outcomes)
    ]
