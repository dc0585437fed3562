"""The loop's sequencing, pure: which drift is announced, which retrain runs, waits or is a duplicate, when a
drift retrain is ready to train, where a candidate goes, and how its window follows the change.

Production and the backtest call these same functions: tasks load the state they need from S3, call a rule
here and carry out the result (conditional writes as before); ``driftline.replay.backtest`` keeps the same state in
memory. No sequencing rule lives anywhere else, and ``tests/flows/test_loop_parity.py`` drives one seeded
stream through both to hold them together.

The order of the loop, as both sides run it (``docs/architecture.md`` section 1)::

    batch arrives  -> observe_drift (hysteresis, one announcement per episode)
                   -> [announced] request_key + admit -> claim -> (waits for the slot | ready? -> train)
                   -> score (champion; shadow and guarded previous beside it)
    labels arrive  -> shadow fold + verdict -> promote | reject | inconclusive
                   -> guard fold -> rollback
                   -> performance fold -> [degraded, announced once] request as above
                   -> the waiting request re-checked: stale? admit (slot) -> ready? -> train
    candidate      -> gates -> decide_placement (floors judged against the champion's present)

Every default is cadence-free: nothing here depends on the wall clock unless the spec sets a time
(``cooldown.seconds``); keys and budgets count batches and rows.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from driftline.models.validation import CHAMPION_GATE
from driftline.statistics.drift import hysteresis_met
from driftline.storage.layout import NAME_PATTERN

if TYPE_CHECKING:
    from driftline.loop.cooldown import RetrainRequest
    from driftline.models.spec import ModelSpec
    from driftline.models.validation import GateReport
    from driftline.statistics.drift import DriftReport

Decision = Literal["shadow", "champion", "rejected"]
Outcome = Literal["proceed", "duplicate", "stale", "shadow-busy", "waiting-for-labels", "nothing-pending"]
ShadowAction = Literal["continue", "promote", "retire"]
# A drift whose importance-weighted score rose by this factor since it was announced is announced again.
ESCALATION_FACTOR = 1.5
# Consecutive clean batches that end a drift episode (at least the hysteresis window).
MIN_QUIET_BATCHES = 2
# Optional per-row training weight: training.train weights the train and early-stop rows by it (holdout unweighted).
WEIGHT_COLUMN = "__driftline_weight__"


# ------------------------------------------------------------------------------------------ time settings


def time_settings(spec: ModelSpec) -> list[str]:
    """What each duration a spec sets means for the loop, whatever the stream's cadence (``model create``
    prints these): every default is cadence-free, so a duration is always the user's choice."""
    notes = []
    if spec.shadow.max_days is not None:
        notes.append(
            f"shadow.max_days {spec.shadow.max_days:g} counts event time: if the labelled batches a test needs to "
            f"reach shadow.min_rows {spec.shadow.min_rows} span more than that, every candidate ends inconclusive "
            "(unset it to budget in rows and batches only)"
        )
    if spec.cooldown.seconds:
        notes.append(
            f"cooldown.seconds {spec.cooldown.seconds} is wall-clock: at most one drift retrain per reference in each "
            "window, however many batches arrive in it (unset: one per drift announcement)"
        )
    if spec.window.last_days is not None:
        notes.append(
            f"window.last_days {spec.window.last_days:g} keeps the rows of that many days of event time before the "
            "newest: with batches spanning longer, a window holds part of one batch"
        )
    return notes


# ------------------------------------------------------------------------------------------ drift episodes


@dataclass(frozen=True)
class DriftEpisode:
    """A lasting drift against one reference: announced once, again only when it ends or grows."""

    reference: str | None
    started_batch: str  # the batch whose drift opened the episode
    announced_batch: str  # the batch of the latest announcement (the retrain's idempotency key)
    announced_score: float
    announced_features: tuple[str, ...]
    announcements: int = 1
    quiet: int = 0  # consecutive batches without drift since the last drifted one

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "announced_features": list(self.announced_features)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftEpisode:
        return cls(
            reference=data.get("reference"),
            started_batch=str(data["started_batch"]),
            announced_batch=str(data["announced_batch"]),
            announced_score=float(data["announced_score"]),
            announced_features=tuple(str(f) for f in data.get("announced_features", ())),
            announcements=int(data.get("announcements", 1)),
            quiet=int(data.get("quiet", 0)),
        )


@dataclass(frozen=True)
class DriftWatch:
    """What drift declaration remembers across batches: recent verdicts (for hysteresis) and the episode."""

    verdicts: tuple[tuple[str, bool], ...] = ()  # (batch_id, drifted), oldest first
    episode: DriftEpisode | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdicts": [{"batch_id": b, "drift": d} for b, d in self.verdicts],
            "episode": self.episode.to_dict() if self.episode else None,
        }

    @classmethod
    def from_dict(cls, data: Any) -> DriftWatch:
        if isinstance(data, list):  # the history as stored before episodes existed
            return cls(tuple((str(e["batch_id"]), bool(e["drift"])) for e in data))
        episode = data.get("episode")
        return cls(
            tuple((str(e["batch_id"]), bool(e["drift"])) for e in data.get("verdicts", [])),
            DriftEpisode.from_dict(episode) if episode else None,
        )


@dataclass(frozen=True)
class DriftDeclaration:
    """One batch's drift decision: declared (hysteresis met) and whether to announce it."""

    batch_id: str
    declared: bool
    announce: bool
    episode: DriftEpisode | None
    reasons: list[str] = field(default_factory=list)
    repeated: bool = False  # the batch was seen before: nothing changed


def observe_drift(
    watch: DriftWatch, batch_id: str, report: DriftReport, reference: str | None, spec: ModelSpec
) -> tuple[DriftWatch, DriftDeclaration]:
    """Fold one batch's drift report into the watch and decide whether drift is declared and announced.

    Declared: ``k`` of the last ``m`` batches drifted (``drift.hysteresis``). Announced: a declared drift that
    opens an episode (none open, or the reference changed), or one whose score rose ``ESCALATION_FACTOR``
    times or that drifted a feature of the model's top ones not announced before. An episode ends after
    ``max(m, MIN_QUIET_BATCHES)`` batches in a row without drift; the next declared drift is a new one.
    A batch seen before changes nothing (a retried run).
    """
    hysteresis = spec.drift.hysteresis
    if any(seen == batch_id for seen, _ in watch.verdicts):
        episode = watch.episode
        return watch, DriftDeclaration(batch_id, False, False, episode, ["batch already observed"], repeated=True)
    verdicts = (*watch.verdicts, (batch_id, bool(report.drift)))[-max(hysteresis.m, 1) :]
    history = [drifted for _, drifted in verdicts]
    declared = bool(report.drift) and hysteresis_met(history, hysteresis.k, hysteresis.m)
    episode = watch.episode
    reasons: list[str] = []
    if report.drift and not declared:
        reasons.append(
            f"hysteresis: {sum(history[-hysteresis.m :])} of the last {hysteresis.m} batches drifted, "
            f"{hysteresis.k} needed"
        )
    if episode is not None and episode.reference != reference:
        episode = None  # a new champion is a new reference: its drift is a new story
    announce = False
    if declared:
        top = tuple(report.drifted_features[: spec.drift.top_k])
        if episode is None:
            episode = DriftEpisode(reference, batch_id, batch_id, float(report.score), top)
            announce = True
            reasons.append(f"drift episode opens at {batch_id}")
        else:
            new_features = [f for f in top if f not in episode.announced_features]
            risen = report.score >= ESCALATION_FACTOR * max(episode.announced_score, 1e-12)
            if risen or new_features:
                why = (
                    f"score {report.score:.3f} >= {ESCALATION_FACTOR:g} x {episode.announced_score:.3f}"
                    if risen
                    else f"newly drifted {', '.join(new_features)}"
                )
                episode = replace(
                    episode,
                    announced_batch=batch_id,
                    announced_score=float(report.score),
                    announced_features=tuple(dict.fromkeys((*episode.announced_features, *top))),
                    announcements=episode.announcements + 1,
                    quiet=0,
                )
                announce = True
                reasons.append(f"drift episode since {episode.started_batch} grew ({why}): announced again")
            else:
                episode = replace(episode, quiet=0)
                reasons.append(
                    f"drift continues the episode since {episode.started_batch} (announced at "
                    f"{episode.announced_batch}): not announced again"
                )
    elif episode is not None:
        quiet = episode.quiet + (0 if report.drift else 1)
        if quiet >= max(hysteresis.m, MIN_QUIET_BATCHES):
            reasons.append(f"drift episode since {episode.started_batch} ended: {quiet} batches without drift")
            episode = None
        else:
            episode = replace(episode, quiet=quiet)
    return DriftWatch(verdicts, episode), DriftDeclaration(batch_id, declared, announce, episode, reasons)


# ------------------------------------------------------------------------------------------ admission


@dataclass(frozen=True)
class Admission:
    """Whether a retrain may start, and every reason; ``key`` is the claim the caller must create first."""

    proceed: bool
    outcome: Outcome
    reasons: list[str] = field(default_factory=list)
    key: str | None = None


def request_key(request: RetrainRequest, spec: ModelSpec) -> str | None:
    """The idempotency key of a drift-triggered request: one retrain per (reference, kind, announcement).

    Cadence-free by default: the announcing batch (``drift_batch_id``) identifies the announcement, so the
    same event delivered twice, or two automations racing, share a key whatever the clock says. With
    ``cooldown.seconds`` set, the cooldown window the request falls in joins the key (at most one retrain
    per reference and window). Manual requests are never claimed (None).
    """
    if request.trigger != "drift":
        return None
    reference = request.reference_version or "provisional"
    announcement = request.drift_batch_id or request.drift_event_id or request.requested_at
    # The kind keeps an input drift announced on a batch apart from a drop announced with its labels.
    key = f"{reference}-{request.drift_kind or 'drift'}-{announcement}"
    if spec.cooldown.seconds:
        occurred = datetime.fromisoformat(request.requested_at)
        occurred = occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC)
        key = f"{reference}-w{int(occurred.timestamp() // spec.cooldown.seconds)}"
    if len(key) > 63 or not NAME_PATTERN.fullmatch(key) or ".." in key:  # e.g. an event id (a UUID) as the name
        key = f"k-{hashlib.sha256(key.encode()).hexdigest()[:40]}"
    return key


def admit(
    request: RetrainRequest,
    spec: ModelSpec,
    *,
    shadow_version: str | None,
    champion: str | None = None,
    already_claimed: bool = False,
    rechecking: bool = False,
) -> Admission:
    """Decide whether a retrain runs (pure); the caller creates ``key`` (conditional write) before training.

    Order: a request about a champion that was replaced meanwhile is stale (its drift was measured against a
    reference no longer in force); a claimed key is a duplicate; then the shadow slot (a candidate in shadow
    refuses a drift retrain unless ``cooldown.supersede_shadow``) without using up the key, so the request can
    wait for the slot; then proceed, claiming the key. A labels re-check (``rechecking``) claims nothing.
    """
    key = None if rechecking else request_key(request, spec)
    if request.trigger == "drift" and stale_pending(request, champion):
        reason = f"the request about drift on {request.reference_version} is stale: {champion} is champion now"
        return Admission(False, "stale", [reason], key)
    if key is not None and already_claimed:
        return lost_claim(request, key)
    outranks = request.drift_kind == "performance"  # a proven drop of the champion outranks the shadow test
    if shadow_version is not None and not (spec.cooldown.supersede_shadow or outranks) and request.trigger != "manual":
        return Admission(
            False,
            "shadow-busy",
            [f"candidate {shadow_version} is still in shadow and cooldown.supersede_shadow is false"],
            key,
        )
    reasons = [f"{request.trigger} retrain of {request.model}"]
    if shadow_version is not None:
        why = " (the champion's performance dropped: the candidate was chosen before)" if outranks else ""
        reasons.append(f"supersedes shadow candidate {shadow_version}{why}")
    return Admission(True, "proceed", reasons, key)


def lost_claim(request: RetrainRequest, key: str) -> Admission:
    """The admission when the key's conditional create failed: another run already answers this drift."""
    return Admission(False, "duplicate", [f"a retrain for {key} of {request.model} already ran or runs"], key)


def waits(request: RetrainRequest, admission: Admission) -> bool:
    """Whether a refused drift request is kept to be retried when labels arrive (only for the slot)."""
    return request.trigger == "drift" and admission.outcome == "shadow-busy"


# ------------------------------------------------------------------------------------------ waiting requests


def _onset_value(onset: str) -> float:
    """An onset as a number to compare: ISO times (naive = UTC) or numeric event times."""
    try:
        moment = datetime.fromisoformat(onset)
    except ValueError:
        return float(onset)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def keep_earliest_onset(request: RetrainRequest, pending: RetrainRequest | None) -> RetrainRequest:
    """The request with the earliest drift onset known for the same reference (pure).

    Under lasting drift later announcements bring later onsets; if each replaced the waiting one, the
    labelled rows "since the onset" would restart each time and a retrain that waits for them would never
    run. The drift began at the first onset, so that one is kept.
    """
    if pending is None or pending.reference_version != request.reference_version:
        return request
    if not pending.drift_onset:
        return request
    if request.drift_onset and _onset_value(request.drift_onset) <= _onset_value(pending.drift_onset):
        return request
    return replace(
        request,
        drift_event_id=pending.drift_event_id,
        drift_batch_id=pending.drift_batch_id,
        drift_onset=pending.drift_onset,
    )


def stale_pending(pending: RetrainRequest, champion: str | None) -> str | None:
    """Why a waiting request no longer applies (pure): its reference champion was replaced; None if it does."""
    if pending.reference_version is not None and champion is not None and pending.reference_version != champion:
        return f"the retrain waiting since drift on {pending.reference_version} is stale: {champion} is champion now"
    return None


# ------------------------------------------------------------------------------------------ readiness


@dataclass(frozen=True)
class Readiness:
    """Whether an admitted retrain trains now, or waits for labels (kept as the pending request)."""

    ready: bool
    reasons: list[str]


def readiness(
    request: RetrainRequest,
    spec: ModelSpec,
    *,
    window_batches: Sequence[str],
    rows_since_onset: int,
    shortfall: str | None = None,
    champion_batches: Sequence[str] | None = None,
) -> Readiness:
    """Whether an admitted retrain has the labelled data it needs (pure).

    A drift-triggered retrain waits while the window is short (``shortfall``), while fewer than
    ``window.min_rows_since_drift`` labelled rows (a retry: ``request.min_rows_since_onset``) lie at or after
    the drift onset, and while its window holds
    exactly the champion's training batches (no labels arrived since: it would retrain the same model).
    A manual retrain only needs a window.
    """
    if shortfall:
        return Readiness(False, [f"{shortfall}; waiting for labels"])
    if request.trigger == "manual":
        return Readiness(True, [f"manual retrain on {len(window_batches)} labelled batch(es)"])
    minimum = max(spec.window.min_rows_since_drift, request.min_rows_since_onset or 0)
    if rows_since_onset < minimum:
        return Readiness(
            False,
            [f"only {rows_since_onset} labelled rows since the drift onset, {minimum} needed; waiting for labels"],
        )
    if champion_batches is not None and list(window_batches) == list(champion_batches):
        return Readiness(False, ["no labelled batch arrived since the champion was trained; waiting for labels"])
    return Readiness(True, [f"{rows_since_onset} labelled rows since the drift onset (>= {minimum})"])


def answers_drop(request: RetrainRequest | None) -> bool:
    """Whether a retrain answers a proven performance drop of the champion (``kind: performance``)."""
    return request is not None and request.trigger == "drift" and request.drift_kind == "performance"


def retry(request: RetrainRequest, rows_since_onset: int) -> RetrainRequest | None:
    """The request again, after its candidate was rejected by the gates, or None when it is not retried.

    A proven performance drop of the champion stays proven when its first answer fails: too few rows of the new
    regime to learn it is the usual cause. So the request waits again, for twice the rows since the onset the
    rejected attempt had, and is retried (re-checked when labels arrive, as any waiting request; stale once
    the champion changes). Each retry doubles the data it waits for, so the retrains stay few. Input drift is
    not retried: its candidate was no better than a champion whose performance holds.
    """
    if not answers_drop(request):
        return None
    return replace(request, min_rows_since_onset=max(2 * rows_since_onset, 1))


# ------------------------------------------------------------------------------------------ the window


def onset_weight(spec: ModelSpec, kind: str | None) -> float:
    """Weight of the rows older than a drift's onset: ``window.before_drop_weight`` when the drift is a proven
    performance drop (the rule changed), ``window.before_onset_weight`` for input (or prediction) drift."""
    return spec.window.before_drop_weight if kind == "performance" else spec.window.before_onset_weight


def onset_weights(frame: pl.DataFrame, spec: ModelSpec, onset: str | None, kind: str | None = None) -> pl.DataFrame:
    """The window with a training-weight column that favours rows from the drift onset on.

    Rows at or after ``onset`` weigh 1; older rows weigh ``onset_weight(spec, kind)`` (0 drops them, 1 keeps
    them as equals). Without an onset (manual or periodic retrains) the frame is returned unchanged. When
    fewer than ``window.min_rows_since_drift`` rows follow the onset the older rows keep weight 1: too few new
    rows to learn a regime from alone.
    """
    weight = onset_weight(spec, kind)
    if onset is None or weight >= 1 or frame.height == 0:
        return frame
    after = _at_or_after(frame, spec, onset)
    newer = int(after.sum())
    if newer < max(spec.window.min_rows_since_drift, 1) or newer == frame.height:
        return frame
    weights = np.where(after.to_numpy(), 1.0, weight).astype(np.float32)
    weighted = frame.with_columns(pl.Series(WEIGHT_COLUMN, weights))
    return weighted.filter(pl.col(WEIGHT_COLUMN) > 0) if weight == 0 else weighted


def _at_or_after(frame: pl.DataFrame, spec: ModelSpec, onset: str) -> pl.Series:
    column = frame.get_column(spec.time_column)
    if column.dtype.is_temporal():
        moment = datetime.fromisoformat(onset)
        if getattr(column.dtype, "time_zone", None) is None and moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        if column.dtype == pl.Date:
            return column >= moment.date()
        return column >= moment
    return column >= float(onset)


def rows_since(frame: pl.DataFrame, spec: ModelSpec, onset: str | None) -> int:
    """Labelled rows whose event time is at or after ``onset`` (all rows when unknown)."""
    if onset is None:
        return frame.height
    return int(_at_or_after(frame, spec, onset).sum())


# ------------------------------------------------------------------------------------------ shadow


def shadow_action(verdict: str) -> ShadowAction:
    """What a shadow verdict asks for: ``promote`` (the promote flow, auto or manual per the spec), ``retire``
    (reject or inconclusive: the candidate leaves the shadow slot, freeing it for the next drift), or
    ``continue``."""
    if verdict == "promote":
        return "promote"
    return "continue" if verdict == "continue" else "retire"


# ------------------------------------------------------------------------------------------ placement


def decide_placement(
    report: GateReport, has_champion: bool, task: str = "binary", champion_degraded: bool = False
) -> tuple[Decision, list[str]]:
    """Where a new candidate goes (pure).

    Without a champion (bootstrap) the absolute gates suffice and the candidate becomes champion: there is
    nothing to compare it with in shadow. With one, every gate must pass and the candidate enters shadow,
    with two waivers, each stated in the reasons:

    * an absolute metric floor, when the candidate beats the champion as it serves now (its metric on the
      same latest holdout rows): a floor must never keep a worse champion in place;
    * the paired non-inferiority interval, when the retrain answers a proven performance drop of the
      champion (``champion_degraded``) and the candidate is at least as good on the point estimate or has the
      lower holdout loss (the loss the monitor proved risen and the shadow test compares): the
      interval protects a healthy champion, and after a change the few new rows make it too wide to pass;
      the shadow test, anytime-valid on live rows, decides instead.
    """
    if not has_champion:
        if report.absolute_passed():
            return "champion", [
                "no champion yet: the absolute gates passed, the candidate becomes champion (bootstrap)"
            ]
        return "rejected", [report.summary()]
    if report.passed:
        return "shadow", ["every gate passed: candidate enters shadow beside the champion"]
    metric, higher_is_better = ("auc", True) if task == "binary" else ("rmse", False)
    mine, theirs = report.metrics.get(metric), report.metrics.get(f"champion_{metric}")
    better = mine is not None and theirs is not None and (mine > theirs if higher_is_better else mine < theirs)
    # The loss the performance monitor proved risen and the shadow test compares (log loss; squared error).
    loss = "logloss" if task == "binary" else "rmse"
    my_loss, their_loss = report.metrics.get(loss, math.nan), report.metrics.get(f"champion_{loss}", math.nan)
    lower_loss = my_loss < their_loss
    waived, reasons = [], []
    for gate in report.failures:
        if gate.name.startswith("metric_floor") and better:
            waived.append(gate)
            reasons.append(
                f"floor waived ({gate.detail}): the champion scores {metric} {theirs:.4f} on the same latest rows, "
                f"the candidate {mine:.4f}"
            )
        elif (
            gate.name == CHAMPION_GATE
            and champion_degraded
            and (gate.measurements.get("difference", -1.0) >= 0 or lower_loss)
        ):
            waived.append(gate)
            reasons.append(
                f"non-inferiority interval waived ({gate.detail}): the champion's performance dropped and the "
                f"candidate is no worse on the same latest rows ({loss} {my_loss:.4f} vs {their_loss:.4f}); the "
                "shadow test decides"
            )
    if len(waived) == len(report.failures):
        return "shadow", [*reasons, "candidate enters shadow"]
    return "rejected", [report.summary()]
