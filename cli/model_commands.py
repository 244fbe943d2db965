"""Commands on a saved model: `xkd eval` (score it on a task), `xkd predict` (label texts), `xkd export` (ONNX,
int8, model2vec)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from xkd.config import DEFAULTS
from xkd.paths import saved_meta

from .distill_options import CUSTOM_TASK_OPTIONS
from .options import (
    DATA_DIR_OPTION,
    SAVED_MAX_LENGTH_OPTION,
    apply,
    echo_err,
    given,
    max_examples_option,
    saved_model,
    task_option,
)


@click.command("eval")
@click.option(
    "--model", "model_dir", required=True, callback=saved_model,
    help="A saved student (RUN_DIR/student, or the run directory), a teacher directory, or a hub id.",
)  # fmt: skip
@task_option(required=True)
@click.option("--split", "split_names", multiple=True, help="Split(s) to score [default: validation and test].")
@DATA_DIR_OPTION
@click.option("--batch-size", type=int, default=DEFAULTS.eval_batch_size, show_default=True)
@SAVED_MAX_LENGTH_OPTION
@max_examples_option("Score at most this many examples per split.")
@apply(CUSTOM_TASK_OPTIONS)
def eval_command(
    model_dir: str,
    task: str,
    split_names: tuple[str, ...],
    data_dir: str | None,
    batch_size: int,
    max_length: int | None,
    max_examples: int | None,
    **custom,
) -> None:
    """Score a saved teacher or student on a task's splits; prints JSON.

    \b
    Example:
      xkd eval --model runs/mr-bert-k2-kd-20260101-120000/student --task mr --split test
    """
    from xkd.config import DistillConfig
    from xkd.evaluation.saved import evaluate_saved

    cfg = DistillConfig(task=task, data_dir=data_dir, max_examples=max_examples, **given(custom))
    result = evaluate_saved(model_dir, cfg, split_names, batch_size, max_length, log=echo_err)
    click.echo(json.dumps(result, indent=2))


@click.command("predict")
@click.argument("texts", nargs=-1)
@click.option(
    "--model", "model_dir", required=True, callback=saved_model,
    help="A saved student (RUN_DIR/student, or the run directory) or teacher directory.",
)  # fmt: skip
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), help="Run this ONNX export of the model.")
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Texts from a file: .txt (one per line, blank lines too; a tab between the texts of a pair), "
    ".tsv/.csv/.jsonl/.parquet (other columns, such as an id, are kept in the output), or - for standard input.",
)
@click.option("--text-column", "text_columns", multiple=True, help="The input table's text column (twice for pairs).")
@click.option("--output", "output_path", type=click.Path(dir_okay=False), help="Write JSON lines here, not stdout.")
@click.option("--batch-size", type=int, default=DEFAULTS.eval_batch_size, show_default=True)
@SAVED_MAX_LENGTH_OPTION
@click.option("--progress/--no-progress", default=True, help="A progress bar for files.  [default: on]")
def predict_command(
    texts, model_dir, onnx_path, input_path, text_columns, output_path, batch_size, max_length, progress
) -> None:
    """Label texts with a saved model: one JSON line per text (label and probabilities, or a value).

    Texts come as arguments or from --input; pair models read a tab between the two texts of an argument.

    \b
    Examples:
      xkd predict --model runs/mr-cnn/student "a gripping , beautifully acted film ." "dull ."
      xkd predict --model runs/mr-cnn/student --input reviews.txt --output labels.jsonl
      cat reviews.txt | xkd predict --model runs/mr-cnn/student --input -
      xkd predict --model runs/mr-cnn/student --onnx cnn.onnx "dull ."
    """
    from xkd.errors import XKDError
    from xkd.files import write_text_atomically
    from xkd.predict import Predictor, read_inputs

    if bool(texts) == bool(input_path):
        raise XKDError("give texts either as arguments or with --input FILE (one of the two)")
    predictor = Predictor(model_dir, onnx=onnx_path, batch_size=batch_size, max_length=max_length)
    pair = predictor.labels.pair
    extras: list[dict] = []
    if input_path:
        rows, extras = read_inputs(input_path, text_columns, pair)
    else:
        rows = [tuple(t.split("\t", 1)) if pair else t for t in texts]
    answers = predictor(rows, progress=progress and input_path is not None)
    # allow_nan=False: a NaN would be invalid JSON; Predictor refuses non-finite outputs, so none can reach here.
    kept = [_carried(extra, answer) for extra, answer in zip(extras or [{}] * len(rows), answers, strict=True)]
    records = [{**extra, "text": row, **answer} for extra, row, answer in zip(kept, rows, answers, strict=True)]
    lines = [json.dumps(record, ensure_ascii=False, allow_nan=False) for record in records]
    if output_path:
        write_text_atomically(Path(output_path), "".join(line + "\n" for line in lines))
        click.echo(f"{len(lines)} predictions: {output_path}", err=True)
    else:
        click.echo("\n".join(lines))


def _carried(extra: dict, answer: dict) -> dict:
    """An input row's other columns, renamed `input_<name>` where the prediction has the same key (a gold `label`
    column stays beside the predicted label instead of being overwritten)."""
    return {(f"input_{k}" if k in answer or k == "text" else k): v for k, v in extra.items()}


@click.command("export")
@click.argument("model_dir", type=click.Path(file_okay=False), callback=saved_model)
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), help="Write an ONNX graph here.")
@click.option(
    "--model2vec",
    "model2vec_dir",
    type=click.Path(file_okay=False),
    help="Static student: write it as a model2vec pipeline directory here (embeddings, tokenizer and head).",
)
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset version.")
@click.option("--quantize", metavar="int8", help="Also write an int8 graph next to the float one: FILE.int8.onnx.")
@click.option(
    "--calibration",
    default="dynamic",
    show_default=True,
    metavar="dynamic|static",
    help="int8 kind: dynamic (needs no data; BERT-k, BiLSTM) or static (ranges calibrated on --task's train; CNN).",
)
@click.option("--calibration-examples", type=int, default=256, show_default=True, help="Static: train examples used.")
@task_option(help="Check the int8 graph on this task's validation split (and calibrate on its train).")
@DATA_DIR_OPTION
@SAVED_MAX_LENGTH_OPTION
@max_examples_option("Use at most this many examples per split (quick checks).")
@click.option("--overwrite/--no-overwrite", default=False, help="Replace existing files.")
def export_command(
    model_dir: str,
    onnx_path: str | None,
    model2vec_dir: str | None,
    opset: int,
    quantize: str | None,
    calibration: str,
    calibration_examples: int,
    task: str | None,
    data_dir: str | None,
    max_length: int | None,
    max_examples: int | None,
    overwrite: bool,
) -> None:
    """Export a saved student (or teacher) for serving: token ids in, logits out; dynamic batch and length.

    The export is checked against PyTorch on real sentences (two batch shapes) before it is written; the report
    (inputs, size, largest difference) is printed as JSON. Needs `pip install 'xkd[export]'`.

    With --quantize int8, ONNX Runtime's quantizer also writes FILE.int8.onnx (FILE stays the float graph), and
    the report's "int8" entry compares its predictions with the float graph's: on --task's validation split
    (agreement and both accuracies), else on a few check sentences.

    With --model2vec, a static student is written by model2vec as a `StaticModelPipeline` directory: the same
    computation (checked on check sentences), loaded by model2vec (`StaticModelPipeline.from_pretrained`) and, the
    embeddings alone, by `StaticModel.from_pretrained`.

    \b
    Examples:
      xkd export runs/mr-bert-k2/student --onnx student.onnx
      xkd export runs/mr-cnn/student --onnx cnn.onnx --opset 17
      xkd export runs/mr-cnn/student --onnx cnn.onnx --quantize int8 --calibration static --task mr
      xkd export runs/mr-static/student --model2vec mr-static-m2v
    """
    from xkd.errors import XKDError
    from xkd.export import check_int8_request, export_int8, export_onnx, int8_path, load_check_data
    from xkd.predict import saved_max_length
    from xkd.students import load_student

    if not Path(model_dir).is_dir():
        raise XKDError(f"{model_dir} is not a directory; pass a saved student such as RUN_DIR/student")
    if model2vec_dir is not None:
        return _export_model2vec(model_dir, model2vec_dir, onnx_path is not None or bool(quantize), overwrite)
    check_int8_request(quantize, calibration, task, onnx_path)
    if onnx_path is None:
        raise XKDError("say where to write the export: --onnx PATH or --model2vec DIR")
    targets = [Path(onnx_path), *([int8_path(onnx_path)] if quantize else [])]
    taken = next((path for path in targets if path.exists()), None)
    if taken is not None and not overwrite:
        raise XKDError(f"{taken} exists; choose another path or pass --overwrite")
    model = load_student(model_dir)
    spec, splits = load_check_data(model, task, data_dir, max_examples) if task else (None, None)
    report = export_onnx(model, onnx_path, opset=opset)
    if quantize:
        length = saved_max_length(saved_meta(model_dir), max_length)
        data = {"task": spec, "splits": splits, "max_length": length, "calibration_examples": calibration_examples}
        report["int8"] = export_int8(model, onnx_path, targets[1], calibration, **data, log=echo_err)
    click.echo(json.dumps(report, indent=2))


def _export_model2vec(model_dir: str, out: str, also_onnx: bool, overwrite: bool) -> None:
    """`xkd export --model2vec`: an export of its own, reported as JSON like the ONNX one."""
    from xkd.errors import XKDError
    from xkd.model2vec_export import export_model2vec

    if also_onnx:
        raise XKDError("--model2vec is an export of its own: run --onnx (and --quantize) in another call")
    click.echo(json.dumps(export_model2vec(model_dir, out, overwrite=overwrite), indent=2))
