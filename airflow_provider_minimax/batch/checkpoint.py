"""Finished chat rows kept across tries, so a retry redoes only the rows that failed or never finished.

The chat API has no idempotency key, so a row answered by an earlier try can only be reused if
its result was saved. It is saved in Airflow's task-state store (Airflow 3.3+):

- its scope is exactly the task instance (dag, run, task, map index) across all of its tries,
  so nothing needs inventing to tell one run's rows from another's;
- Airflow clears it when the task succeeds, so nothing is left behind;
- with a state-store backend configured, large values go to object storage on their own.

A JSONL file next to ``output_path`` would need none of those reinvented only if object stores
could append and rename atomically; they cannot. Results are written in parts (one key per
flush), so each write is small, no write reads back what it adds to, and a crash loses at most
the rows since the last flush. Each row is saved with a fingerprint of its request: a row whose
prompt or settings changed between tries is asked again rather than reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_minimax.batch.rows import RowResult

log = logging.getLogger(__name__)

PARTS_KEY = "minimax_batch_parts"
PART_KEY = "minimax_batch_part_{}"


def fingerprint(request: Mapping[str, Any]) -> str:
    """A short, stable digest of a row's request body.

    :param request: the request as sent on the wire.
    """
    body = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


class RowCheckpoint:
    """Successful rows of earlier tries, read once, and the writer of this try's parts.

    :param store: ``context["task_state_store"]``, or None (Airflow < 3.3: nothing is kept).
    """

    def __init__(self, store: Any) -> None:
        self._store = store
        self._parts = 0
        self._saved: dict[int, tuple[str, Any]] | None = None

    @property
    def enabled(self) -> bool:
        """Whether rows survive between tries."""
        return self._store is not None

    def load(self, fingerprints: Mapping[int, str]) -> dict[int, RowResult]:
        """The rows earlier tries finished whose request is still the same.

        Earlier tries' parts are read once per try; a streamed batch asks window by window.

        :param fingerprints: the current fingerprint of the rows asked about, by row index.
        """
        if self._store is None:
            return {}
        if self._saved is None:
            self._parts = int(self._store.get(PARTS_KEY) or 0)
            self._saved = {}
            for part in range(self._parts):
                for key, (digest, saved) in dict(self._store.get(PART_KEY.format(part)) or {}).items():
                    self._saved[int(key)] = (digest, saved)
        found: dict[int, RowResult] = {}
        for row, digest in fingerprints.items():
            saved = self._saved.get(row)
            if saved is not None and saved[0] == digest:
                found[row] = RowResult.model_validate(saved[1])
        return found

    def save(self, rows: Sequence[RowResult], fingerprints: Mapping[int, str]) -> None:
        """Add a part with these finished rows (only successes: failures are to be redone).

        :param rows: rows finished since the last save.
        :param fingerprints: the current fingerprint of every row, by row index.
        """
        done = {str(r.row): [fingerprints[r.row], r.to_json()] for r in rows if r.ok}
        if self._store is None or not done:
            return
        # The part first, then the count: a crash in between only leaves an unread part behind.
        self._store.set(PART_KEY.format(self._parts), done)
        self._parts += 1
        self._store.set(PARTS_KEY, self._parts)
