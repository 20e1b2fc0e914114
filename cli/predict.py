"""``cafe predict``: expressions of the faces in photos, folders and videos, fully offline."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from cafe_cache.errors import CafeError
from cafe_cache.files import printable
from cafe_cache.options import DETECTOR_NAMES

if TYPE_CHECKING:  # torch, OpenCV and the models load only when a command runs
    from cafe_cache.predict.infer import PictureResult

from .common import bounded, console, out, progress

OUT_SUFFIXES = (".csv", ".json")
SHOWN_ROWS = 50  # the screen table stops here; --out has every row


def annotated_name(picture: PictureResult) -> str:
    """Unique per picture: input position, file stem, frame for videos."""
    frame = "" if picture.frame is None else f"_f{picture.frame:06d}"
    return f"{picture.index:04d}_{picture.path.stem}{frame}.jpg"


def sampled_frames(path: Path, every: int) -> int | None:
    """How many frames ``--every`` will visit, from the container's frame count (None if unknown)."""
    import cv2
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    return math.ceil(count / every) if count > 0 else None


def table_of(rows: list[dict[str, Any]], width: int = 80) -> Table:
    """The rows as a table that stays readable at 80 columns: columns with nothing in them (frame and
    time for photos) are left out, an error takes the expression's place,
    and the file name is cut first."""
    shown = rows[:SHOWN_ROWS]
    cells = {
        "file": [printable(Path(r["file"]).name) for r in shown],
        "frame": ["" if r["frame"] is None else str(r["frame"]) for r in shown],
        "time s": ["" if r["time_s"] is None else f"{r['time_s']:.2f}" for r in shown],
        "face": ["" if r["face"] is None else str(r["face"]) for r in shown],
        "x1,y1,x2,y2": ["" if r["error"] else ",".join(f"{r[k]:.0f}" for k in ("x1", "y1", "x2", "y2"))
                        for r in shown],
        "score": ["" if r["score"] is None else f"{r['score']:.2f}" for r in shown],
        "expression": [escape(printable(f"error: {r['error']}")) if r["error"] else f"{r['label']} {r[r['label']]:.2f}"
                       for r in shown],
    }
    columns = [name for name, values in cells.items() if name in ("file", "expression") or any(values)]
    fixed = {name: max(len(name), *(len(v) for v in cells[name])) for name in columns
             if name not in ("file", "expression")}
    expression = min(max(len("expression"), *(len(v) for v in cells["expression"])), 16)
    # Rich shrinks only wrapping columns: the file name gets what the others leave of ``width``
    room = width - sum(fixed.values()) - expression - 3 * len(columns) - 1
    table = Table()
    for name in columns:
        if name == "file":
            table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=max(8, min(24, room)))
        elif name == "expression":
            table.add_column(name, overflow="fold", width=expression)
        else:
            table.add_column(name, no_wrap=True, width=fixed[name])
    for i in range(len(shown)):
        table.add_row(*(cells[name][i] for name in columns))
    return table


def show(rows: list[dict[str, Any]], saved_to: Path | None) -> None:
    table = table_of(rows, max(80, out.width))
    out.print(table)
    if len(rows) > SHOWN_ROWS:
        where = f"all in {saved_to}" if saved_to else "pass --out FILE to keep them all"
        out.print(f"(first {SHOWN_ROWS} of {len(rows)} rows shown; {where})")


def summary_line(rows: list[dict[str, Any]]) -> str:
    from cafe_cache.predict.infer import summary
    s = summary(rows)
    return (f"{s['faces']} faces in {s['pictures']} images/frames from {s['files']} inputs; "
            f"no face in {s['no_face']} images/frames; {s['failed']} inputs failed"
            + (" (see the error column)" if s["failed"] else ""))


def predict(
    inputs: list[Path] = typer.Argument(..., help="Image files, folders (searched recursively) and video files."),
    checkpoint: str | None = typer.Option(None, "--checkpoint", "-c", help="Run folder of `cafe train` (or "
                                          "RUN/best.safetensors, RUN/last.safetensors), a `cafe package` folder, "
                                          "or hf://ORG/NAME[@REVISION] (a package on the Hugging Face Hub)."),
    onnx: Path | None = typer.Option(None, "--onnx", help="Predict with a `cafe export` file via onnxruntime instead "
                                                          "of --checkpoint."),
    out_file: Path | None = typer.Option(None, "--out", "-o", help="Write every row to FILE.csv or FILE.json."),
    annotated: Path | None = typer.Option(None, "--save-annotated", help="Write each image/frame with boxes and "
                                                                              "labels drawn into this folder."),
    detector: str = typer.Option("auto", help=f"Face detector: {', '.join(DETECTOR_NAMES)} (auto: MTCNN if "
                                              "facenet-pytorch is installed, else LBP)."),
    no_detect: bool = typer.Option(False, "--no-detect", help="Inputs are face crops already (as datasets store them): "
                                                              "no detection or alignment."),
    every: int = typer.Option(1, callback=bounded(), help="Videos: use every N-th frame."),
    batch_size: int = typer.Option(32, callback=bounded(),
                                   help="Faces per model batch, and images/frames per detection chunk."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda."),
    clip_weights: str | None = typer.Option(None, help="The CLIP file the run's cache was made from, if it was made "
                                                       "from a file."),
) -> None:
    """Facial expression of every face in photos and videos: a table, and --out CSV/JSON."""
    from cafe_cache.files import check_outputs
    from cafe_cache.predict.api import load

    if out_file is not None and out_file.suffix.lower() not in OUT_SUFFIXES:
        raise CafeError(f"--out {out_file}: name a .csv or .json file.")
    if (checkpoint is None) == (onnx is None):
        raise CafeError("pass either --checkpoint RUN (a `cafe train` run folder, a `cafe package` folder or "
                        "hf://ORG/NAME) or --onnx FILE (from `cafe export`).")
    check_outputs(out_file, annotated)  # before any work, not after it
    recognizer = load(checkpoint or onnx, device=device, detector=detector, clip_weights=clip_weights,
                      batch_size=batch_size, warn=False)
    from cafe_cache.predict.infer import all_failed, draw_faces, predict_inputs, save_annotated, write_rows
    from cafe_cache.predict.media import iter_inputs

    face_detector = None if no_detect else recognizer.detector
    for warning in (recognizer.warning, face_detector and face_detector.fallback_reason):
        if warning:
            console.print(f"[bold yellow]warning:[/] {escape(warning)}")
    console.print(f"model: {recognizer.description}; faces: "
                  + ("inputs used as face crops" if face_detector is None else f"{face_detector.name} detector"))
    items = list(iter_inputs(inputs))
    rows: list[dict[str, Any]] = []
    try:
        with progress("file") as bar:
            files = bar.add_task("files", total=len(items), rate="")
            frames, video = None, None
            for picture in predict_inputs(items, recognizer, not no_detect, every=every, chunk_size=batch_size):
                rows.extend(picture.rows)
                bar.update(files, completed=picture.index)
                if picture.frame is not None:
                    if video != picture.index:
                        video = picture.index
                        frames = bar.add_task(picture.path.name, total=sampled_frames(picture.path, every), rate="")
                    bar.update(frames, completed=picture.frame // every + 1)
                if annotated is not None and picture.image is not None:
                    save_annotated(draw_faces(picture.image, picture.rows), annotated / annotated_name(picture))
            bar.update(files, completed=len(items))
    finally:  # an interrupted or failing run still keeps every row computed so far
        if out_file is not None:
            write_rows(out_file, rows, recognizer)
    show(rows, out_file)
    console.print(summary_line(rows))
    if out_file is not None:
        console.print(f"written: {out_file}")
    if rows and all_failed(rows):
        raise CafeError(f"every one of the {len(items)} inputs failed (see the error column); nothing was predicted.")
