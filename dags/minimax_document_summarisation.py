"""Daily map-reduce summaries of a folder of documents with MiniMax M2.7, published as an Asset."""

from __future__ import annotations

import logging
import re
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, Param, dag, task
from pydantic import BaseModel, Field

from airflow_provider_minimax.operators.chat import MiniMaxChatOperator

#: Downstream DAGs schedule on this; each event's ``extra`` names the run's index file.
SUMMARIES = Asset(name="minimax_document_summaries", group="minimax")
DOCUMENTS_DIR = Path(__file__).parent / "data" / "documents"
#: Scanned pages (PNG/JPEG/WebP/GIF): read by the model's vision, no OCR step.
SCANS_DIR = Path(__file__).parent / "data" / "scans"
SCAN_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
#: Param, then Airflow Variable ``minimax_output_dir``, then a temp dir.
OUTPUT_ROOT = (
    "{{ params.output_dir or var.value.get('minimax_output_dir', '"
    + (Path(tempfile.gettempdir()) / "minimax-output").as_posix()
    + "') }}"
)
#: One folder per run date (``run_after``: manual runs in Airflow 3 have no logical date).
RUN_DIR = OUTPUT_ROOT + "/summaries/{{ dag_run.run_after | ds }}"
log = logging.getLogger(__name__)
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")


class DocumentSummary(BaseModel):
    """The final summary of one document, written in the document's own language."""

    title: str = Field(description="A short title for the document")
    summary: str = Field(description="One paragraph summarising the whole document")
    key_points: list[str] = Field(description="Three to six key points, one sentence each")


def estimate_tokens(text: str) -> int:
    """A conservative token estimate: one per CJK character, one per four other characters.

    :param text: the text
    """
    cjk = len(CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


def split_to_budget(text: str, budget: int) -> list[str]:
    """Split on paragraphs, then sentences, into pieces of at most ``budget`` estimated tokens.

    :param text: the document
    :param budget: the most estimated tokens per piece
    """
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        if estimate_tokens(paragraph) <= budget:
            pieces.append(paragraph)
            continue
        # A paragraph over budget: fall back to sentences (Latin and CJK punctuation), and a
        # sentence still over budget to slices of ``budget`` characters (never over ``budget`` tokens).
        for sentence in re.split(r"(?<=[.!?\u3002\uff01\uff1f])\s*", paragraph):
            pieces += [sentence[i : i + budget] for i in range(0, len(sentence), budget) if sentence.strip()]
    chunks: list[str] = []
    for piece in pieces:
        if chunks and estimate_tokens(chunks[-1]) + estimate_tokens(piece) <= budget:
            chunks[-1] = f"{chunks[-1]}\n\n{piece}"
        else:
            chunks.append(piece)
    return chunks


@dag(
    dag_id="minimax_document_summarisation",
    schedule="@daily",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["minimax", "example", "llm"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True},
    params={
        "documents_dir": Param(str(DOCUMENTS_DIR), type="string", description="Folder of .md/.txt files"),
        "scans_dir": Param(str(SCANS_DIR), type="string", description="Folder of scanned pages (images)"),
        "output_dir": Param("", type="string", description="Where to write; empty: Variable or temp dir"),
        "chunk_tokens": Param(
            1000,
            type="integer",
            minimum=200,
            maximum=150_000,
            description="Estimated tokens per chunk; M2.7's context is 200K, smaller chunks summarise better",
        ),
    },
    doc_md=__doc__
    + """

Reads every `.md` / `.txt` file of `documents_dir` (English and Chinese samples ship in
`dags/data/documents/`), splits long ones into chunks of at most `chunk_tokens` estimated
tokens, summarises each chunk (**map**, one mapped task per chunk), then combines each
document's notes into a structured `DocumentSummary` (**reduce**, one mapped task per
document). Scanned pages in `scans_dir` (a sample delivery note ships in `dags/data/scans/`)
are read by the model's vision (`images=`, one mapped task per page) and summarised alongside.
Writes `<output>/summaries/<date>/<document>.md` plus `index.md`, and emits an event
on the `minimax_document_summaries` Asset whose `extra` holds the index path, so downstream
DAGs (see `minimax_summaries_digest`) run when fresh summaries exist.

* Connection `minimax_chat` (chat API); the tasks run in pool `minimax` to respect the rate limit.
* Output folder: the `output_dir` param, else the Variable `minimax_output_dir`, else a temp dir.
* Chunk sizes are deliberately small so the sample's long document shows the map-reduce; for
  real documents raise `chunk_tokens` (leave room under the 200K context for the prompt and answer).
""",
)
def minimax_document_summarisation() -> None:
    """Chunk, summarise chunks, reduce per document, write Markdown, publish the Asset."""

    @task
    def chunk_documents(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """One record per chunk: document name, position, total and text."""
        assert params is not None  # Airflow passes the run's params.
        folder, chunk_tokens = Path(params["documents_dir"]), params["chunk_tokens"]
        files = sorted(p for p in folder.iterdir() if p.suffix in {".md", ".txt"})
        if not files:
            raise FileNotFoundError(f"No .md or .txt documents in {folder}")
        chunks = []
        for path in files:
            parts = split_to_budget(path.read_text(encoding="utf-8"), chunk_tokens)
            chunks += [
                {"document": path.stem, "index": i, "count": len(parts), "text": text}
                for i, text in enumerate(parts)
            ]
        log.info("%d documents -> %d chunks of at most %s tokens", len(files), len(chunks), chunk_tokens)
        return chunks

    @task.minimax(
        conn_id="minimax_chat",
        pool="minimax",
        max_tokens=1024,
        system_prompt=(
            "You take notes for a summary. Write terse bullet points with every fact, figure, date "
            "and decision in the text. Write in the language of the text."
        ),
        map_index_template="{{ chunk['document'] }} {{ chunk['index'] + 1 }}/{{ chunk['count'] }}",
    )
    def summarise_chunk(chunk: dict[str, Any]) -> str:
        """The map step: notes on one chunk."""
        part = f"part {chunk['index'] + 1} of {chunk['count']}"
        return f"Document {chunk['document']!r}, {part}:\n\n{chunk['text']}"

    @task
    def list_scans(params: dict[str, Any] | None = None) -> list[str]:
        """The scanned pages to read, as paths (an empty folder maps to no task)."""
        assert params is not None
        folder = Path(params["scans_dir"])
        return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in SCAN_SUFFIXES)

    @task
    def notes_by_document(
        chunks: list[dict[str, Any]], notes: list[str], scans: list[str], scan_notes: list[str]
    ) -> list[dict[str, Any]]:
        """Group the chunk notes per document, in chunk order (mapped results keep map order);
        each scanned page is a document of its own."""
        grouped: dict[str, list[str]] = {}
        for chunk, note in zip(chunks, notes, strict=True):
            grouped.setdefault(chunk["document"], []).append(note)
        for scan, note in zip(scans, scan_notes, strict=True):
            grouped[f"scan-{Path(scan).stem}"] = [note]
        return [{"document": name, "notes": parts} for name, parts in grouped.items()]

    @task.minimax(
        conn_id="minimax_chat",
        pool="minimax",
        output_type=DocumentSummary,
        system_prompt=(
            "You write the final summary of a document from notes on its parts, in the language "
            "of the notes. Keep every figure exact."
        ),
        map_index_template="{{ document['document'] }}",
    )
    def reduce_document(document: dict[str, Any]) -> str:
        """The reduce step: one structured summary per document."""
        notes = "\n\n".join(f"Notes on part {i + 1}:\n{n}" for i, n in enumerate(document["notes"]))
        return f"Document {document['document']!r}.\n\n{notes}"

    @task(outlets=[SUMMARIES])
    def write_summaries(
        documents: list[dict[str, Any]], summaries: list[dict[str, Any]], out_dir: str, **context: Any
    ) -> str:
        """Write one Markdown file per document and index.md; the Asset event carries the paths."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        index = ["# Document summaries", ""]
        for document, raw in zip(documents, summaries, strict=True):
            summary = DocumentSummary.model_validate(raw)
            name = f"{document['document']}.md"
            points = "\n".join(f"- {p}" for p in summary.key_points)
            # Write then rename: a reader never sees half a file, and a retry just overwrites.
            tmp = folder / f".{name}.tmp"
            tmp.write_text(f"# {summary.title}\n\n{summary.summary}\n\n## Key points\n\n{points}\n", "utf-8")
            tmp.replace(folder / name)
            index.append(f"- [{summary.title}]({name}) ({len(document['notes'])} chunk(s))")
        (folder / "index.md").write_text("\n".join(index) + "\n", encoding="utf-8")
        context["outlet_events"][SUMMARIES].extra = {
            "index": str(folder / "index.md"),
            "documents": [d["document"] for d in documents],
        }
        log.info("Wrote %d summaries and %s", len(documents), folder / "index.md")
        return str(folder / "index.md")

    chunks = chunk_documents()
    notes = summarise_chunk.expand(chunk=chunks)
    scans = list_scans()
    # Vision: one mapped task per page, the page file sent inline with the prompt.
    scan_notes = MiniMaxChatOperator.partial(
        task_id="read_scanned_page",
        conn_id="minimax_chat",
        pool="minimax",
        max_tokens=1024,
        prompt=(
            "This is a scanned page. Transcribe what it says, then take terse notes with every fact, "
            "figure, date and decision on it, in the language of the page."
        ),
    ).expand(images=scans)
    documents = notes_by_document(chunks, notes, scans, scan_notes.output)
    summaries = reduce_document.expand(document=documents)
    write_summaries(documents, summaries, out_dir=RUN_DIR)


minimax_document_summarisation()


@dag(
    dag_id="minimax_summaries_digest",
    schedule=[SUMMARIES],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["minimax", "example"],
    doc_md="""
Runs whenever `minimax_document_summarisation` publishes fresh summaries (the
`minimax_document_summaries` Asset) and reads the newest event's index. Replace the task with
whatever consumes your summaries: a search index, a Slack digest, a wiki page.
""",
)
def minimax_summaries_digest() -> None:
    """Consume the newest summaries."""

    @task(inlets=[SUMMARIES])
    def read_index(**context: Any) -> dict[str, Any]:
        """Read the index named by the newest Asset event (triggered or not)."""
        events = context["inlet_events"][SUMMARIES]
        if not events:
            raise ValueError("No minimax_document_summaries event yet: run the summarisation DAG first")
        index = Path(events[-1].extra["index"])
        lines = [line for line in index.read_text(encoding="utf-8").splitlines() if line.startswith("- ")]
        log.info("%d summaries in %s:\n%s", len(lines), index, "\n".join(lines))
        return {"index": str(index), "summaries": len(lines)}

    read_index()


minimax_summaries_digest()
