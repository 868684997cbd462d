"""The Parquet schema of a study's results, and its writers and readers.

A study's folder (`results/<study>/` or any pyarrow filesystem URI, e.g. s3://bucket/x) holds

    trials.parquet/part-<trial_id>.parquet   one row per finished trial
    epochs.parquet/part-<trial_id>.parquet   one row per (trial, epoch)
    confirm.parquet/part-<trial>-split<k>.parquet  the finalists retrained on fresh validation splits
    final.parquet/part-<seed>.parquet        the refit of the chosen configuration, scored on test
    models/seed<seed>.pt                     the refit's models (gzsl.modelfile; python -m gzsl.predict)
    study.parquet/part-run-<ms>.parquet      the study's settings, one row per start or resume

Each part is written once, when its trial ends, and never rewritten: a crash loses
at most the trials in flight, and a rerun or resume cannot duplicate a row.
`pandas.read_parquet(folder / "trials.parquet")` reads the parts as one table.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from gzsl import hyperparams
from gzsl.errors import ResultsError

_TRIALS = [  # less the searched hyperparameters, which schema() puts after "status" (SEARCHED_AFTER)
    ("trial_id", pa.string()),  # Tune's trial id, unique within a study
    ("trial_number", pa.int64()),  # order in which the searcher proposed it
    ("status", pa.string()),  # completed | pruned | diverged | error
    ("best_val_H", pa.float64()),  # best validation H over the epochs run (%)
    ("best_val_U", pa.float64()),  # U and S of that epoch
    ("best_val_S", pa.float64()),
    ("best_epoch", pa.int64()),
    ("last_val_H", pa.float64()),
    ("last_val_U", pa.float64()),
    ("last_val_S", pa.float64()),
    ("epochs_run", pa.int64()),
    ("seconds", pa.float64()),  # wall time of the trial
    ("started_at", pa.timestamp("ms", tz="UTC")),
    ("ended_at", pa.timestamp("ms", tz="UTC")),
    ("node_id", pa.string()),  # Ray node that ran it
    ("node_ip", pa.string()),
    ("gpu_id", pa.string()),  # the GPU ids Ray assigned the trial (ray.get_gpu_ids()), "" on CPU
    ("executor_id", pa.string()),  # the executor that trained it in its pack ([resources] pack > 1), "" alone
    ("gpu_mem_mb", pa.float64()),  # peak GPU memory of the trial, null on CPU
    ("seed", pa.int64()),
    ("error", pa.string()),  # the exception, for status error
    ("startup_seconds", pa.float64()),  # trial start to first reported epoch, less that epoch's time
    ("start", pa.string()),  # "defaults", "start 1", ... for the study's starting points; "" when TPE proposed it
    ("path", pa.string()),  # the fast paths it trained with (gzsl.fastpaths): "eager", or e.g. "epoch-graph+..."
]

EPOCHS = pa.schema([
    ("trial_id", pa.string()),
    ("epoch", pa.int64()),  # 1-based
    ("loss_total", pa.float64()),  # per-image means over the epoch
    ("loss_vae", pa.float64()),
    ("loss_sc", pa.float64()),
    ("loss_cr", pa.float64()),
    ("loss_dd", pa.float64()),
    ("val_U", pa.float64()),
    ("val_S", pa.float64()),
    ("val_H", pa.float64()),
    ("seconds", pa.float64()),  # this epoch, evaluation included (a packed trial: its pack's epoch)
    ("eval_seconds", pa.float64()),  # of which evaluation (validation H); 0 on epochs without one
])

_FINAL = [  # less the searched hyperparameters, which schema() puts after "seed"
    ("seed", pa.int64()),
    ("kl_weight", pa.float64()),
    ("epochs", pa.int64()),  # the schedule (warm-ups) the model trained under
    ("scored_epoch", pa.int64()),  # the epoch scored: refit_epoch of the chosen trial (below)
    # CADA-VAE's classifier recipe (evaluation.cada_recipe: the dataset's epochs, the last one
    # scored): the numbers published rows report.
    ("classifier_epochs", pa.int64()),  # the recipe's epochs on this dataset
    ("test_U", pa.float64()),
    ("test_S", pa.float64()),
    ("test_H", pa.float64()),
    ("fast_test_U", pa.float64()),  # the fast classifier (evaluation.FAST_CLASSIFIER), same latents
    ("fast_test_S", pa.float64()),
    ("fast_test_H", pa.float64()),
    ("model", pa.string()),  # the saved model (gzsl.modelfile), relative to the results folder; null if diverged
    ("seconds", pa.float64()),
    ("status", pa.string()),
]

CONFIRM = pa.schema([  # one row per (finalist, fresh validation split): gzsl.study.confirm
    ("trial_id", pa.string()),  # the finalist's trial
    ("start", pa.string()),  # its starting-point label ("defaults", ...), "" when TPE proposed it
    ("val_split", pa.int64()),  # the validation classes (gzsl.data.build's val_split, >= 1)
    ("seed", pa.int64()),
    ("scored_epoch", pa.int64()),  # refit_epoch of the trial, scored as the refit would
    ("val_U", pa.float64()),
    ("val_S", pa.float64()),
    ("val_H", pa.float64()),
    ("seconds", pa.float64()),
    ("status", pa.string()),  # completed | diverged
])

AUDIT = pa.schema([  # one row per audited stop: the stopped trial retrained to the end (gzsl.study.audit)
    ("trial_id", pa.string()),
    ("stopped_epoch", pa.int64()),  # where the rung stopped it
    ("stopped_val_H", pa.float64()),  # its H there
    ("best_val_H", pa.float64()),  # trained to the end: its best H ...
    ("best_epoch", pa.int64()),  # ... at this epoch
    ("last_val_H", pa.float64()),
    ("epochs_run", pa.int64()),
    ("seconds", pa.float64()),
    ("status", pa.string()),  # completed | diverged
])

STUDY = pa.schema([  # one row per start (or resume) of the study
    ("study", pa.string()),
    ("dataset", pa.string()),
    ("split", pa.string()),
    ("epochs", pa.int64()),  # per trial, ASHA's max_t
    ("batch_size", pa.int64()),
    ("eval_every", pa.int64()),  # the grid validation H is scored on
    ("peak_every", pa.int64()),  # the recipe also every n epochs for the refit epoch's peak (0: nowhere else)
    ("eval_at", pa.string()),  # JSON: the epochs a trial scores H (the rungs, the last, the peak grid)
    ("hidden", pa.string()),  # JSON: the four hidden widths (ENC_V, DEC_V, ENC_S, DEC_S)
    ("grace_period", pa.int64()),
    ("reduction_factor", pa.int64()),
    ("h_floor", pa.float64()),  # a rung whose best H is below it stops nobody (gzsl.study.scheduler)
    ("h_noise", pa.float64()),  # a trial stops only below its rung's cutoff by more than this
    ("audit", pa.float64()),  # the fraction of stops retrained to the end (gzsl.selection.audited)
    ("early_stopping", pa.bool_()),
    ("confirm_top", pa.int64()),  # finalists confirmed besides the defaults (0: the search's best is chosen)
    ("confirm_splits", pa.int64()),  # fresh validation splits each finalist is retrained on
    ("num_samples", pa.int64()),
    ("resources", pa.string()),  # JSON, per trial (per executor when pack > 1)
    ("pack", pa.int64()),  # configurations (members) trained as one model per executor
    ("space", pa.string()),  # JSON: name -> {low, high, log} or {choices}
    ("start", pa.string()),  # JSON: [[label, params], ...], the trials evaluated first (defaults first)
    ("beta", pa.float64()),  # fixed by the study, or TrainConfig's default
    ("kl_weight", pa.float64()),
    ("sampling", pa.string()),  # textbook | cada, or "searched"
    ("classifier", pa.string()),  # final classifier of validation H: cada (CADA-VAE's recipe) | fast
    ("seed", pa.int64()),
    ("resumed", pa.bool_()),
    ("started_at", pa.timestamp("ms", tz="UTC")),
    ("schema_version", pa.int64()),  # SCHEMA_VERSION of the gzsl that wrote this folder
    ("fingerprint", pa.string()),  # gzsl.gate.fingerprint of the study's settings: the folder is this study's
])

TABLES = ("trials", "epochs", "confirm", "audit", "final", "study")
# Where each table's columns of the searched hyperparameters go (one per row of gzsl.hyperparams).
SEARCHED_AFTER = {"trials": "status", "final": "seed"}


def schema(table: str) -> pa.Schema:
    """A table's Arrow schema: trials and final with a column per searched hyperparameter."""
    fixed = {"trials": _TRIALS, "epochs": EPOCHS, "confirm": CONFIRM, "audit": AUDIT, "final": _FINAL,
             "study": STUDY}[table]
    if table not in SEARCHED_AFTER:
        return fixed
    at = [name for name, _ in fixed].index(SEARCHED_AFTER[table]) + 1
    return pa.schema(fixed[:at] + [(h.name, h.arrow_type) for h in hyperparams.SEARCHED] + fixed[at:])


# The schemas above. A folder written under another one is refused with one line (check_version),
# never read half-filled with nulls. 9: no column changed, but the saved Tune state holds the
# scheduler seam's RuleScheduler, which a run started under 8 cannot be resumed into.
SCHEMA_VERSION = 9


class ResultStore:
    """A study's results folder on any pyarrow filesystem (local path or URI)."""

    def __init__(self, uri: str):
        self.fs, self.root = pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), uri)
        self.uri = uri

    def _dir(self, table: str) -> str:
        return f"{self.root.rstrip('/')}/{table}.parquet"

    def has_part(self, table: str, part: str) -> bool:
        return self.fs.get_file_info(f"{self._dir(table)}/part-{part}.parquet").type == pafs.FileType.File

    def write_part(self, table: str, part: str, rows: list[dict], replace: bool = False) -> bool:
        """Write rows as one new part; False (nothing written) when that part already exists,
        unless `replace` (then the new part takes its place, whole: readers see one or the other)."""
        if not rows or (self.has_part(table, part) and not replace):
            return False
        columns = schema(table)
        self.fs.create_dir(self._dir(table), recursive=True)
        data = pa.Table.from_pylist([{f.name: row.get(f.name) for f in columns} for row in rows], schema=columns)
        final = f"{self._dir(table)}/part-{part}.parquet"
        tmp = f"{self._dir(table)}/.tmp-{part}.parquet"  # hidden from readers until complete
        pq.write_table(data, tmp, filesystem=self.fs)
        self.fs.move(tmp, final)
        return True

    def read(self, table: str):
        """The table as a pandas DataFrame (empty, with the schema's columns, when absent)."""
        if self.fs.get_file_info(self._dir(table)).type != pafs.FileType.Directory:
            return schema(table).empty_table().to_pandas()
        try:
            data = pq.read_table(self._dir(table), filesystem=self.fs, schema=schema(table))
            data.validate(full=True)  # a damaged string (bad UTF-8) reads, then fails wherever it is used
            return data.to_pandas()
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise self._damage(table, exc) from None

    def _damage(self, table: str, exc: Exception) -> ResultsError:
        """The one-line error of a table that does not read, naming its first part that does not.
        Parts are written whole (write_part), so a bad one was damaged outside gzsl."""
        for part in sorted(self.part_ids(table)):
            path = f"{self._dir(table)}/part-{part}.parquet"
            try:
                pq.read_table(path, filesystem=self.fs, schema=schema(table)).validate(full=True)
            except (pa.ArrowException, OSError, ValueError) as part_exc:
                why = str(part_exc).strip().splitlines()[0] if str(part_exc).strip() else type(part_exc).__name__
                return ResultsError(f"{path}: not a readable {table} part ({why}); it was damaged outside gzsl: "
                                    "restore it from a backup, or move it out of the folder (its rows are lost)")
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ResultsError(f"{self._dir(table)}: cannot be read ({why}); restore the folder or pass another --results")

    def check_version(self) -> None:
        """ResultsError (one line) when this folder was written under another SCHEMA_VERSION."""
        if self.fs.get_file_info(self._dir("study")).type != pafs.FileType.Directory:
            return
        found = set(self.read("study").schema_version.dropna().astype(int)) or {1}
        if found != {SCHEMA_VERSION}:
            raise ResultsError(f"{self.uri}: results written by another version of gzsl (schema {max(found)}, this "
                               f"one reads {SCHEMA_VERSION}); run the study again into a new --results folder, or "
                               "read these with the gzsl that wrote them")

    def part_ids(self, table: str) -> set[str]:
        if self.fs.get_file_info(self._dir(table)).type != pafs.FileType.Directory:
            return set()
        infos = self.fs.get_file_info(pafs.FileSelector(self._dir(table)))
        return {i.base_name[len("part-"):-len(".parquet")] for i in infos if i.base_name.startswith("part-")}
