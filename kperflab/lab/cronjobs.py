"""batch/v1 CronJob: the schedule as kube-controller-manager reads it (robfig/cron v3's standard parser: five fields,
month and weekday names, ``@hourly``-style descriptors, ``@every <duration>``, a ``CRON_TZ=``/``TZ=`` prefix),
defaults and validation as kube-apiserver's (``pkg/apis/batch``), and the CronJob controller (``cronjob_controllerv2``):
Jobs named ``<cronjob>-<scheduled time in minutes since the epoch>``, ``concurrencyPolicy`` Allow/Forbid/Replace,
``suspend``, ``startingDeadlineSeconds``, the history limits, ``status.active``/``lastScheduleTime``/
``lastSuccessfulTime`` and the controller's events. Time comes from the store's clock, so tests drive it."""

from __future__ import annotations

import copy
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import errors
from . import validation as v
from .events import Recorder
from .store import Store, rfc3339

log = logging.getLogger("kperflab.lab.cronjobs")
Obj = dict[str, Any]
KEY = "batch/v1/cronjobs"
JOBS = "batch/v1/jobs"
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
TOO_MANY_MISSED = 100

# -- the schedule (robfig/cron v3, ParseStandard) ---------------------------------------------------------------

STAR = 1 << 63
_BOUNDS = {  # field → (min, max, names)
    "minute": (0, 59, {}), "hour": (0, 23, {}), "dom": (1, 31, {}),
    "month": (1, 12, {m: i + 1 for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}),
    "dow": (0, 6, {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}),
}
_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
                "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


class CronError(ValueError):
    """A schedule the parser refuses, with robfig/cron's wording."""


@dataclass(frozen=True)
class Schedule:
    minute: int = 0
    hour: int = 0
    dom: int = 0
    month: int = 0
    dow: int = 0
    tz: Any = UTC
    every: float = 0.0  # @every: a constant delay in seconds

    def next(self, t: datetime) -> datetime | None:
        """The first activation strictly after ``t`` (an aware datetime), in ``self.tz``; None within five years."""
        if self.every:
            nxt = t + timedelta(seconds=self.every)
            return nxt.replace(microsecond=0)
        local = t.astimezone(self.tz).replace(second=0, microsecond=0, tzinfo=None) + timedelta(minutes=1)
        limit = local.year + 5
        while local.year <= limit:
            if not (1 << local.month) & self.month:
                local = (local.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(local):
                local = local.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if not (1 << local.hour) & self.hour:
                local = local.replace(minute=0) + timedelta(hours=1)
                continue
            if not (1 << local.minute) & self.minute:
                local += timedelta(minutes=1)
                continue
            return local.replace(tzinfo=self.tz)
        return None

    def _day_matches(self, d: datetime) -> bool:
        dom = bool((1 << d.day) & self.dom)
        dow = bool((1 << ((d.weekday() + 1) % 7)) & self.dow)
        if self.dom & STAR or self.dow & STAR:
            return dom and dow
        return dom or dow


def _go_fields(fields: list[str]) -> str:
    return "[" + " ".join(fields) + "]"


def _int(expr: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", expr):
        raise CronError(f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax')
    n = int(expr)
    if n < 0:
        raise CronError(f"negative number ({n}) not allowed: {expr}")
    return n


def _field(expr: str, field: str) -> int:
    lo, hi, names = _BOUNDS[field]
    bits = 0
    for part in expr.split(","):
        range_and_step = part.split("/")
        low_and_high = range_and_step[0].split("-")
        single = len(low_and_high) == 1
        extra = 0
        if low_and_high[0] in ("*", "?"):
            start, end, extra = lo, hi, STAR
        else:
            start = names.get(low_and_high[0].lower())
            start = _int(low_and_high[0]) if start is None else start
            if len(low_and_high) == 1:
                end = start
            elif len(low_and_high) == 2:
                end = names.get(low_and_high[1].lower())
                end = _int(low_and_high[1]) if end is None else end
            else:
                raise CronError(f"too many hyphens: {part}")
        if len(range_and_step) == 1:
            step = 1
        elif len(range_and_step) == 2:
            step = _int(range_and_step[1])
            if single:
                end = hi
            if step > 1:
                extra = 0
        else:
            raise CronError(f"too many slashes: {part}")
        if start < lo:
            raise CronError(f"beginning of range ({start}) below minimum ({lo}): {part}")
        if end > hi:
            raise CronError(f"end of range ({end}) above maximum ({hi}): {part}")
        if start > end:
            raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
        if step == 0:
            raise CronError(f"step of range should be a positive number: {part}")
        for n in range(start, end + 1, step):
            bits |= 1 << n
        bits |= extra
    return bits


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration for the plain forms (``1h30m``, ``90s``, ``1.5h``)."""
    if not text or _GO_DURATION.sub("", text):
        raise CronError(f'failed to parse duration {text}: time: invalid duration "{text}"')
    return sum(float(n) * _UNIT[u] for n, u in _GO_DURATION.findall(text))


def parse(spec: str, tz: Any = UTC) -> Schedule:
    """cron.ParseStandard(spec); ``tz`` is the location when the spec names none (the CronJob's timeZone)."""
    if not spec:
        raise CronError("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, spec = spec.partition(" ")
        name = head.split("=", 1)[1]
        tz = load_location(name, f"provided bad location {name}: ")
        spec = spec.strip()
    if spec.startswith("@"):
        if spec.startswith("@every "):
            seconds = parse_duration(spec[len("@every "):].strip())
            return Schedule(tz=tz, every=max(1.0, float(int(seconds))))
        if spec not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: {_go_fields(fields)}")
    minute, hour, dom, month, dow = (_field(f, n) for f, n in zip(fields, ("minute", "hour", "dom", "month", "dow"),
                                                                   strict=True))
    return Schedule(minute, hour, dom, month, dow, tz)


def load_location(name: str, prefix: str = "") -> Any:
    """Go's time.LoadLocation: "" and "UTC" are UTC, "Local" the machine's, else the IANA database."""
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return datetime.now().astimezone().tzinfo
    try:
        if name.startswith("/") or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"{prefix}unknown time zone {name}") from None


# -- defaults and validation (pkg/apis/batch) ---------------------------------------------------------------------

def default_cronjob(obj: Obj) -> None:
    """SetDefaults_CronJob; the job template's pod template gets the pod defaults (not the Job's own)."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    tmpl = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") if isinstance(spec.get("jobTemplate"), dict) else None
    if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
        v.default_pod(tmpl)


def _nonnegative(field: str, value: Any) -> list[v.Cause]:
    if value is not None and isinstance(value, int) and value < 0:
        return [v.invalid_value(field, value, "must be greater than or equal to 0")]
    return []


def validate_cronjob(obj: Obj) -> list[v.Cause]:
    """ValidateCronJobCreate: the name (a subdomain of at most 52 characters: the Job names add 11), the schedule as
    the controller parses it (no TZ in it: the timeZone field says the zone), the zone, the policy, the limits and
    the job template as a Job's spec."""
    meta = obj.get("metadata")
    out = v.metadata(meta, namespaced=True)
    name = meta.get("name") if isinstance(meta, dict) else None
    if isinstance(name, str) and len(name) > 52:
        out.append(v.invalid_value("metadata.name", name, "must be no more than 52 characters"))
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return out + [v.cause("spec", "Required value", "")]
    out += validate_schedule(spec)
    policy = spec.get("concurrencyPolicy")
    if not policy:
        out.append(v.cause("spec.concurrencyPolicy", "Required value", ""))
    elif policy not in ("Allow", "Forbid", "Replace"):
        out.append(v.not_supported("spec.concurrencyPolicy", policy, ("Allow", "Forbid", "Replace")))
    for f in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        out += _nonnegative(f"spec.{f}", spec.get(f))
    jt = spec.get("jobTemplate")
    if not isinstance(jt, dict) or not isinstance(jt.get("spec"), dict):
        return out + [v.cause("spec.jobTemplate.spec.template.spec.containers", "Required value", "")]
    job_like = {"metadata": {"name": "x", "namespace": "x"}, "spec": jt["spec"]}
    for c in v.job(job_like):
        out.append({**c, "field": c["field"].replace("spec.", "spec.jobTemplate.spec.", 1)})
    return out


def validate_schedule(spec: Obj) -> list[v.Cause]:
    schedule, tz_name = spec.get("schedule"), spec.get("timeZone")
    out: list[v.Cause] = []
    if not schedule:
        out.append(v.cause("spec.schedule", "Required value", ""))
    elif not isinstance(schedule, str):
        out.append(v.invalid_value("spec.schedule", schedule, "must be a string"))
    else:
        if "TZ" in schedule:
            why = ("cannot use both timeZone field and TZ or CRON_TZ in schedule" if tz_name is not None
                   else "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
            out.append(v.invalid_value("spec.schedule", schedule, why))
        else:
            try:
                parse(schedule)
            except CronError as exc:
                out.append(v.invalid_value("spec.schedule", schedule, str(exc)))
    if tz_name is not None:
        if not isinstance(tz_name, str) or tz_name == "":
            out.append(v.invalid_value("spec.timeZone", tz_name, "timeZone must be nil or non-empty string"))
        elif tz_name.lower() == "local":
            out.append(v.invalid_value("spec.timeZone", tz_name,
                                       "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"))
        else:
            try:
                load_location(tz_name)
            except CronError as exc:
                out.append(v.invalid_value("spec.timeZone", tz_name, str(exc)))
    return out


def validate_update(old: Obj, new: Obj) -> list[v.Cause]:
    """ValidateCronJobUpdate: a schedule that already held a TZ may keep it."""
    causes = validate_cronjob(new)
    old_schedule = (old.get("spec") or {}).get("schedule") or ""
    if "TZ" in old_schedule and (new.get("spec") or {}).get("schedule") == old_schedule:
        causes = [c for c in causes if not (c["field"] == "spec.schedule" and "CRON_TZ" in c["message"])]
    return causes


# -- the controller -----------------------------------------------------------------------------------------------

def parse_time(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        return datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def job_name(cronjob: Obj, scheduled: datetime) -> str:
    """getJobName: the scheduled time in minutes since the epoch."""
    return f"{cronjob['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def most_recent(cronjob: Obj, now: datetime, sched: Schedule) -> tuple[datetime | None, int]:
    """mostRecentScheduleTime: the latest activation in (earliest, now] and how many were missed; earliest is the
    last schedule time (else creation), no earlier than now − startingDeadlineSeconds."""
    status, spec = cronjob.get("status") or {}, cronjob.get("spec") or {}
    earliest = parse_time(status.get("lastScheduleTime")) or parse_time(cronjob["metadata"].get("creationTimestamp")) or now
    sds = spec.get("startingDeadlineSeconds")
    if isinstance(sds, int):
        earliest = max(earliest, now - timedelta(seconds=sds))
    if earliest > now:
        return None, 0
    latest, missed, t = None, 0, earliest
    while True:
        nxt = sched.next(t)
        if nxt is None or nxt > now:
            break
        latest, missed, t = nxt, missed + 1, nxt
        if missed > 100_000:  # a schedule missed for years: the count is what matters, not the walk
            break
    return latest, missed


def _finished(job: Obj) -> str:
    """'Complete', 'Failed' or '' (IsJobFinished / getFinishedStatus)."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return ""


def _ref(job: Obj) -> Obj:
    m = job["metadata"]
    return {"kind": "Job", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"], "apiVersion": "batch/v1",
            "resourceVersion": m.get("resourceVersion", "")}


def job_from_template(cronjob: Obj, scheduled: datetime) -> Obj:
    """getJobFromTemplate2: the template's labels and annotations, the scheduled-time annotation (in the CronJob's
    zone), a controller reference to the CronJob; the Job's defaults and controller-uid selector as the API server
    gives them on create."""
    jt = cronjob["spec"]["jobTemplate"]
    tmeta = jt.get("metadata") or {}
    tz = cronjob["spec"].get("timeZone")
    try:
        zone = load_location(tz) if tz else UTC
    except CronError:
        zone = UTC
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_ANNOTATION] = scheduled.astimezone(zone).isoformat().replace("+00:00", "Z")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": job_name(cronjob, scheduled), "namespace": cronjob["metadata"]["namespace"],
        "labels": dict(tmeta.get("labels") or {}), "annotations": annotations,
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cronjob["metadata"]["name"],
                             "uid": cronjob["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
        "spec": copy.deepcopy(jt.get("spec") or {})}
    if not job["metadata"]["labels"]:
        job["metadata"].pop("labels")
    prepare_job(job)
    return job


def prepare_job(job: Obj) -> None:
    """What kube-apiserver does to a Job it creates: defaults, the generated selector and labels, an empty status."""
    v.default_job(job)
    uid = str(uuid.uuid4())
    job["metadata"]["uid"] = uid
    sel = {"batch.kubernetes.io/controller-uid": uid}
    job["spec"].setdefault("selector", {"matchLabels": sel})
    name = job["metadata"]["name"]
    labels = job["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})
    labels.update({**sel, "batch.kubernetes.io/job-name": name, "controller-uid": uid, "job-name": name})
    job["status"] = {}


class CronJobController:
    """kube-controller-manager's cronjob controller (v2), one pass over every CronJob per call."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.events = Recorder(store, "cronjob-controller")
        self._unexpected: set[str] = set()  # job uids already reported as UnexpectedJob
        self._warned: set[tuple[str, str, str]] = set()  # (uid, reason, message) said once per state

    def reconcile(self) -> None:
        cronjobs, *_ = self.store.list(KEY)
        if not cronjobs:
            return
        jobs, *_ = self.store.list(JOBS, None, lambda j: any(
            r.get("kind") == "CronJob" and r.get("controller") for r in j["metadata"].get("ownerReferences") or []))
        for cj in cronjobs:
            uid = cj["metadata"]["uid"]
            mine = [j for j in jobs if any(r.get("uid") == uid and r.get("controller")
                                           for r in j["metadata"].get("ownerReferences") or [])]
            try:
                self.sync(cj, mine)
            except errors.APIError as exc:
                if exc.code not in (404, 409):
                    log.warning("cronjob %s: %s", cj["metadata"]["name"], exc.message)
            except Exception:  # noqa: BLE001 - one odd CronJob must not stop the others
                log.exception("cronjob %s failed", cj["metadata"].get("name"))

    def _warn_once(self, cj: Obj, reason: str, message: str) -> None:
        """A warning the controller gives when it looks (on a change or at the next scheduled time): here, once."""
        key = (cj["metadata"]["uid"], reason, message)
        if key not in self._warned:
            self._warned.add(key)
            self.events.event(cj, "Warning", reason, message)

    def sync(self, cj: Obj, jobs: list[Obj]) -> None:
        now = datetime.fromtimestamp(self.store.clock(), UTC)
        status = copy.deepcopy(cj.get("status") or {})
        active = list(status.get("active") or [])
        changed = False
        by_uid = {j["metadata"]["uid"]: j for j in jobs}
        for j in jobs:
            juid, done = j["metadata"]["uid"], _finished(j)
            found = any(a.get("uid") == juid for a in active)
            if not found and not done:
                if juid not in self._unexpected:
                    self._unexpected.add(juid)
                    self.events.event(cj, "Warning", "UnexpectedJob",
                                      f"Saw a job that the controller did not create or forgot: {j['metadata']['name']}")
            elif found and done:
                active = [a for a in active if a.get("uid") != juid]
                self.events.event(cj, "Normal", "SawCompletedJob",
                                  f"Saw completed job: {j['metadata']['name']}, condition: {done}")
                changed = True
            if done == "Complete":
                completed = (j.get("status") or {}).get("completionTime")
                last = parse_time(status.get("lastSuccessfulTime"))
                if completed and (last is None or (parse_time(completed) or now) > last):
                    status["lastSuccessfulTime"] = completed
                    changed = True
        for a in list(active):  # an active job deleted meanwhile
            if a.get("uid") not in by_uid and self.store.try_get(JOBS, cj["metadata"]["namespace"], a.get("name", "")) is None:
                self.events.event(cj, "Normal", "MissingJob", f"Active job went missing: {a.get('name')}")
                active.remove(a)
                changed = True
        if not cj["metadata"].get("deletionTimestamp"):
            changed |= self._schedule(cj, status, active, now)
            changed |= self._cleanup(cj, jobs)
        status["active"] = active
        if not active:
            status.pop("active")
        if changed or status != (cj.get("status") or {}):
            fresh = copy.deepcopy(cj)
            fresh["status"] = status
            self.store.update(KEY, fresh)

    def _schedule(self, cj: Obj, status: Obj, active: list[Obj], now: datetime) -> bool:
        spec = cj["spec"]
        tz = spec.get("timeZone")
        try:
            zone = load_location(tz) if tz else UTC
        except CronError as exc:
            self._warn_once(cj, "UnknownTimeZone", f"invalid timeZone: {tz!r}: {exc}".replace("'", '"'))
            return False
        if spec.get("suspend"):
            return False
        try:
            sched = parse(spec.get("schedule") or "", zone)
        except CronError as exc:
            self._warn_once(cj, "UnparseableSchedule", f'unparseable schedule: "{spec.get("schedule")}" : {exc}')
            return False
        scheduled, missed = most_recent({**cj, "status": status}, now, sched)
        if missed > TOO_MANY_MISSED:
            self._warn_once(cj, "TooManyMissedTimes", f"too many missed start times: {missed}. Set or decrease "
                                                      ".spec.startingDeadlineSeconds or check clock skew")
        if scheduled is None:
            return False
        sds = spec.get("startingDeadlineSeconds")
        if isinstance(sds, int) and scheduled + timedelta(seconds=sds) < now:  # said once per missed time, as the
            self._warn_once(cj, "MissSchedule", "Missed scheduled time to start a job: "  # controller requeues to the next
                            + scheduled.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"))
            return False
        name = job_name(cj, scheduled)
        if any(a.get("name") == name for a in active) or parse_time(status.get("lastScheduleTime")) == scheduled:
            return False  # already processed
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and active:  # once per scheduled time: the controller looks again at the next one
            key = (cj["metadata"]["uid"], "JobAlreadyActive", name)
            if key not in self._warned:
                self._warned.add(key)
                self.events.event(cj, "Normal", "JobAlreadyActive",
                                  "Not starting job because prior execution is running and concurrency policy is Forbid")
            return False
        if policy == "Replace":
            for a in list(active):
                job = self.store.try_get(JOBS, cj["metadata"]["namespace"], a.get("name", ""))
                if job is not None:
                    self._delete(cj, job)
                active.remove(a)
        job = job_from_template(cj, scheduled)
        try:
            created = self.store.create(JOBS, job, "jobs", "batch")
        except errors.APIError as exc:
            if exc.code == 409:  # made in an earlier pass whose status write was lost
                existing = self.store.try_get(JOBS, job["metadata"]["namespace"], name)
                if existing and any(r.get("uid") == cj["metadata"]["uid"]
                                    for r in existing["metadata"].get("ownerReferences") or []):
                    if not _finished(existing) and not any(a.get("uid") == existing["metadata"]["uid"] for a in active):
                        active.append(_ref(existing))
                    status["lastScheduleTime"] = rfc3339(scheduled.timestamp())
                    return True
            self.events.event(cj, "Warning", "FailedCreate", f"Error creating job: {exc.message}")
            return False
        self.events.event(cj, "Normal", "SuccessfulCreate", f"Created job {name}")
        active.append(_ref(created))
        status["lastScheduleTime"] = rfc3339(scheduled.timestamp())
        return True

    def _delete(self, cj: Obj, job: Obj) -> None:
        from .deployments import delete_object

        try:
            delete_object(self.store, JOBS, job, "Background")
        except errors.APIError as exc:
            self.events.event(cj, "Warning", "FailedDelete", f"Deleted job: {exc.message}")
            return
        self.events.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {job['metadata']['name']}")

    def _cleanup(self, cj: Obj, jobs: list[Obj]) -> bool:
        """cleanupFinishedJobs: the oldest finished Jobs (by start time) beyond each history limit."""
        spec = cj["spec"]
        if spec.get("successfulJobsHistoryLimit") is None and spec.get("failedJobsHistoryLimit") is None:
            return False
        done = False
        for kind, limit in (("Complete", spec.get("successfulJobsHistoryLimit")), ("Failed", spec.get("failedJobsHistoryLimit"))):
            if limit is None:
                continue
            finished = [j for j in jobs if _finished(j) == kind and not j["metadata"].get("deletionTimestamp")]
            if len(finished) <= limit:
                continue
            finished.sort(key=lambda j: ((j.get("status") or {}).get("startTime") is None,
                                         (j.get("status") or {}).get("startTime") or "", j["metadata"]["name"]))
            for j in finished[:len(finished) - limit]:
                self._delete(cj, j)
                done = True
        return done
