"""The gate: every input of a study run that can be checked without Ray, checked before Ray starts.

`check(args)` reads the study file, the command line, the environment ($GZSL_OPTUNA_STORAGE,
$RAY_ADDRESS), the results folder (whose study it is, whether its Parquet parts read, their
schema version) and, on a local run, this machine's CPUs against what a trial asks. Whatever
is wrong ends here in one GzslError line (gzsl.tune prints it with any password masked and
exits 2); nothing has started, nothing was written. No Ray, no torch at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, urlsplit

from gzsl.errors import ConfigError, ResultsError
from gzsl.studyfile import LIMITS, StudySpec, limit_problem, load_study, with_gpu

STORAGE_ENV = "GZSL_OPTUNA_STORAGE"
# user:password@ in anything that looks like a URL or a DSN, with a scheme or without one.
_CREDENTIAL = re.compile(r"(?P<user>[^\s:/@]*):(?P<password>[^\s@/]+)@")


def mask(text: str) -> str:
    """`text` with the password of every user:password@ in it replaced by ***: for any message
    that may hold a storage URL, whatever the URL looks like."""
    return _CREDENTIAL.sub(lambda m: f"{m['user']}:***@", text)


def shown(value: str) -> str:
    """A value a user gave, fit for a one-line message: masked, and quoted with escapes where it
    holds a line break or another control character."""
    masked = mask(value)
    return masked if masked.isprintable() else repr(masked)


@dataclass(frozen=True)
class Checked:
    """What a run may start with: the study, where its results go, the Optuna URL (None: the
    folder's SQLite), the cluster to join (None: a local Ray) and lines to print first."""

    spec: StudySpec
    results: str
    storage: str | None
    address: str | None
    notes: list[str] = field(default_factory=list)


def check(args, environ=os.environ) -> Checked:
    """Every check that needs no Ray, in the order a reader would fix them: the study file, the
    flags, the environment, the results folder, this machine's resources."""
    spec = load_study(args.study)
    if args.gpu is not None:
        spec = with_gpu(spec, args.gpu)
    if args.data_root:
        spec = replace(spec, data_root=args.data_root)
    check_flags(args)
    storage = check_storage(args.optuna_storage, environ.get(STORAGE_ENV))
    notes = list(spec.notes)
    address = args.address
    if not address and environ.get("RAY_ADDRESS"):
        address = environ["RAY_ADDRESS"]
        notes.append(f"joining the Ray cluster at {mask(address)} named by $RAY_ADDRESS (unset it for a local Ray "
                     "on this machine)")
    results = args.results or os.path.join(default_results_root(address), spec.name)
    check_no_secret(results)
    if "://" not in results:
        results = os.path.abspath(os.path.expanduser(results))
    check_results_folder(spec, results, args.resume, args.num_samples)
    if not address:
        check_local_cpus(spec, args.num_cpus)
    return Checked(spec, results, storage, address, notes)


_FLAGS = {"num_samples": "search.num_samples", "max_concurrent": "search.max_concurrent"}


def check_flags(args) -> None:
    """The numbers on the command line, within the study files' LIMITS."""
    for flag, key in _FLAGS.items():
        value = getattr(args, flag)
        low = 1 if flag == "num_samples" else 0
        if value is not None and (value < low or limit_problem(key, value)):
            raise ConfigError(f"--{flag.replace('_', '-')} must be in [{low}, {LIMITS[key][1]}], got {value}")
    if args.num_cpus is not None and not 1 <= args.num_cpus <= LIMITS["resources.cpu"][1]:
        raise ConfigError(f"--num-cpus must be in [1, {LIMITS['resources.cpu'][1]}], got {args.num_cpus}")


def check_storage(flag: str | None, env: str | None) -> str | None:
    """The Optuna storage URL: --optuna-storage, else $GZSL_OPTUNA_STORAGE. A password on the
    command line is refused (`ps`, shell history and Ray's job table, whose entrypoint is the
    driver's command line, would show it); a URL that is not one is refused, masked."""
    url = flag if flag is not None else env
    if url is None:
        return None
    where = "--optuna-storage" if flag is not None else f"${STORAGE_ENV}"
    if "://" not in url:
        raise ConfigError(f"{where} {shown(url)}: not a database URL; expected e.g. postgresql://USER@HOST/DB "
                          "or sqlite:///PATH/optuna.db")
    try:
        import sqlalchemy.engine

        parsed = sqlalchemy.engine.make_url(url)
        parsed.port  # noqa: B018 - parses the port: "host:abc" raises here, not in a trial
    except Exception as exc:
        first = mask(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{where} {shown(url)}: not a valid database URL ({shown(first)})") from None
    if flag is not None and (parsed.password or urlsplit(url).password):
        raise ConfigError(f"--optuna-storage {shown(url)}: a password on the command line is shown by ps, shell "
                          f"history and Ray's job table; export {STORAGE_ENV}='{shown(url)}' (with the password) and "
                          "leave --optuna-storage out")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ConfigError(f"{where} {shown(url)}: port {parsed.port} is not a TCP port (1-65535)")
    _connect(url, parsed, where)
    return url


def driver_fix(scheme: str) -> str:
    """What to install for a storage URL whose database driver is missing."""
    if scheme.startswith("postgres"):
        return 'pip install "gzsl[cluster]"'
    if scheme.startswith("mysql"):
        return "pip install mysqlclient (or PyMySQL with a mysql+pymysql:// URL)"
    return "install the database driver SQLAlchemy needs for it"


def _connect(url: str, parsed, where: str) -> None:
    """Open the database once and close it: a driver that is missing, a host that does not resolve
    or a password that is refused ends here, not after Ray started."""
    import sqlalchemy

    scheme = url.split(":", 1)[0]
    args = {"timeout": 30} if scheme.startswith("sqlite") else {"connect_timeout": 10} if "postgres" in scheme else {}
    try:
        sqlalchemy.create_engine(url, connect_args=args).connect().close()
    except ImportError as exc:
        raise ConfigError(f"{where} {shown(url)}: no database driver for {shown(scheme)}:// "
                          f"({mask(str(exc.__cause__ or exc))}); {driver_fix(scheme)}") from None
    except Exception as exc:  # sqlalchemy's errors, and the driver's beneath them
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{where} {shown(url)}: cannot open it ({shown(first)})") from None


def check_no_secret(results: str) -> None:
    """A --results URI that carries a credential (a password, or a secret in its query) would be
    written into Tune's saved state and the log: refused, naming the way to give it instead."""
    if "://" not in results:
        return
    parts = urlsplit(results)
    secret = [k for k, _ in parse_qsl(parts.query) if any(w in k.lower() for w in ("secret", "password", "token"))]
    if parts.password or secret:
        what = "a password" if parts.password else f"{', '.join(secret)} in its query"
        raise ConfigError(f"--results {parts.scheme}://{parts.hostname or ''}{parts.path}: holds {what}; give "
                          "credentials through the environment (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                          "or an instance role), never in the URI")


def fingerprint(spec: StudySpec) -> str:
    """A short hash of everything a run of `spec` keeps for its whole life (what --resume must
    find unchanged): study.parquet records it, and a folder is one study's when it matches."""
    settings = {"dataset": spec.dataset, "split": spec.split, "seed": spec.seed, "epochs": spec.epochs,
                "batch_size": spec.batch_size, "eval_every": spec.eval_every, "peak_every": spec.peak_every,
                "hidden": spec.hidden, "space": [list(map(str, (p.name, p.low, p.high, p.log, p.choices))) for p in spec.space],
                "start": spec.start, "fixed": spec.fixed, "grace_period": spec.grace_period,
                "reduction_factor": spec.reduction_factor, "h_floor": spec.h_floor, "h_noise": spec.h_noise,
                "audit": spec.audit, "pack": spec.pack, "resources": spec.resources}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_results_folder(spec: StudySpec, results: str, resume: bool, num_samples: int | None = None) -> None:
    """The results folder, if it holds anything: every Parquet part reads, under this gzsl's
    schema, and it is this study's (its name; on --resume the settings are compared key by key
    later, gzsl.study.check_start). Another study's folder is refused: two studies in one folder
    would be ranked, chosen and reported together."""
    from gzsl.results import TABLES, ResultStore

    try:
        store = ResultStore(results)
        tables = {t: store.read(t) for t in TABLES}
    except ResultsError:
        raise
    except Exception as exc:  # an unreachable or unreadable URI
        raise ResultsError(f"--results {mask(results)}: cannot be read ({mask(str(exc).splitlines()[0])}); fix the "
                           "path or the credentials in the environment") from None
    runs = tables["study"]
    if runs.empty:
        if len(tables["trials"]) and not resume:
            raise ResultsError(f"{results}: holds trials but no study.parquet: not a folder of one gzsl run; pass "
                               "another --results folder")
        return
    store.check_version()
    names = sorted(set(runs.study.dropna()))
    if names != [spec.name]:
        raise ResultsError(f"{results}: that folder belongs to study {', '.join(names)}, not {spec.name}; pass "
                           f"another --results folder (the default is results/{spec.name})")
    recorded = set(runs.fingerprint.dropna())
    if not resume and recorded:
        raise ResultsError(f"{results}: already holds a run of study {spec.name}; add --resume to continue it, or "
                           "pass another --results folder")
    if resume and num_samples is not None:
        resumed_budget(store, num_samples, results)
    if resume and recorded and fingerprint(spec) not in recorded:
        from gzsl.study.driver import check_unchanged  # names the key that changed

        check_unchanged(spec, store, results)
        raise ResultsError(f"{results}: was started with other settings of study {spec.name} than {spec.path} "
                           "says now; set them back, or start a new run with another --results folder")


def resumed_budget(store, asked: int | None, results_uri: str) -> int | None:
    """The trial budget of the run being resumed (study.parquet), which Tuner.restore keeps:
    `--num-samples` given at the start need not be repeated, and a different one is refused."""
    runs = store.read("study")
    first = runs[~runs.resumed.astype(bool)].sort_values("started_at")
    if first.empty:
        return asked
    budget = int(first.num_samples.iloc[0])
    if asked is not None and asked != budget:
        raise ConfigError(f"--num-samples {asked}: the run in {results_uri} was started with a budget of {budget} "
                          "trials, which a resumed run keeps; resume without --num-samples")
    return budget


def check_local_cpus(spec: StudySpec, num_cpus: int | None) -> None:
    """A local run: a trial (an executor of a packed study) that asks for more CPUs than this
    machine's Ray has could never be placed, and the study would wait forever."""
    have = num_cpus or os.cpu_count() or 1
    want = spec.resources.get("cpu", 1)
    if want > have:
        per = "executor" if spec.pack > 1 else "trial"
        given = f"--num-cpus {num_cpus}" if num_cpus else f"this machine's {have} CPUs"
        raise ConfigError(f"{spec.path}: resources.cpu = {want:g} per {per}, but the local Ray has {given}: no "
                          f"{per} could ever start; set resources.cpu <= {have} or raise --num-cpus (on a cluster, "
                          "pass --address)")


def default_results_root(address: str | None) -> str:
    """results/ under the current directory for a local Ray; on a cluster (--address, or
    $RAY_ADDRESS), ~/gzsl-results on the node the driver runs on (the head): a `ray job submit`
    entrypoint runs in Ray's temporary copy of the submitted folder, different for every job, where
    --resume and gzsl.report would not find an earlier job's results."""
    return os.path.expanduser("~/gzsl-results") if address else "results"
