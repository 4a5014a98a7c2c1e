"""Train the Julia controller (:class:`.model.ControllerNet`), measure it against the analytic
controller on held-out songs (:mod:`.proxy`) and export it to ONNX with its model card.

The one command that reproduces the shipped model (corpus and training, ``--threads 1``)::

    .venv/bin/python -m examples.julia.controller_training.train --work /tmp/controller_work \\
        --out fractalsync_models/models/controller_v1.onnx

Corpus (:mod:`.data`, cached in ``--work``, resumable): generated songs ``--seeds`` (default
300-379: disjoint from the measurement's 1001-1009 and the demo's 2026, and outside the
anticipator's training seeds 0-239, so its predictions are the realistic ones) and the real
recordings ``--recordings`` (beats only: they take part in the pulse and smoothness losses);
the held-out songs 1001-1009 and 2026 (``--heldout``) are built into ``<work>/heldout`` for
the proxy evaluation only, and the validation songs 400-409 (``--validation``: neither
training nor held-out; the loss weights are chosen on them) into ``<work>/validation``.

Training: each epoch cuts every song into crops of ``--crop`` frames (a random offset), each
run from the zero state (a stream's start). Conditioning per crop (:func:`.data.conditioning`):
teacher-forced during the first ``--teacher`` fraction of the epochs, then the probability of
the teacher falls linearly to 0 over the same number of epochs, after which only the
anticipator's predictions are fed; the robustness noise (delay 0-2 slow steps, hazard
dropout, probability noise) is always on. The section loss is weighted by the true sections
(the teacher's one-hot, :mod:`.losses` 3), the anticipation loss by the clean conditioning's
hazards (the crop's teacher or prediction before the noise). Loss =
``sum_i weight_i * loss_i`` (:mod:`.losses`; weights ``--w-pulse`` etc.), each logged per
epoch. Adam with a cosine learning-rate decay over the epochs (``--lr`` at the first),
gradient norm clipped to 1 (a batch with a non-finite loss or gradient is skipped and
counted), deterministic (seeded; ``--threads``).

Export (:func:`export_onnx`): ``torch.onnx.export`` (TorchScript exporter, opset 17), IR 8,
``onnx.checker`` (full), ``validate_onnx_model(..., "controller")`` against
``contracts/v1.json``, and onnxruntime against torch over a sequence with the state
carried (within 1e-5, relative to max(|torch|, 1); the first 1200 frames of the first
held-out song's runtime inputs) before the file is written atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from fractalsync_models.atomic_write import write_atomic
from fractalsync_models.contract import load_contract, validate_onnx_model

from . import losses
from .data import SongFrames, build_corpus, conditioning
from .model import STATE, ControllerNet
from .proxy import analytic_controls, model_controls, pooled, proxy_metrics

OPSET = 17
IR_VERSION = 8
PARITY_TOL = 1e-5
INPUT_NAMES = ("micro_features", "beat_features", "section_probs", "hazard_probs", "state_in")
OUTPUT_NAMES = ("control", "state_out")
LOSS_NAMES = ("pulse", "smooth", "section", "anticipation", "variety", "look")
DEFAULT_RECORDINGS = ("Kevin_MacLeod_-_Vibe_Ace.ogg", "Karissa_Hobbs_-_Lets_Go_Fishin.ogg")
HELDOUT = (1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 2026)
VALIDATION = tuple(range(400, 410))


@dataclass
class TrainConfig:
    """Training hyper-parameters (recorded in the model card)."""

    epochs: int = 20
    batch: int = 6
    crop: int = 1200
    lr: float = 3e-3
    teacher: float = 0.25
    noise: float = 1.0
    w_pulse: float = 1.0
    w_smooth: float = 1.0
    w_section: float = 3.0
    w_section_switch: float = 3.0
    w_anticipation: float = 1.0
    w_variety: float = 1.0
    w_look: float = 1.0
    seed: int = 0
    threads: int = 1


def micro_stats(songs: list[SongFrames]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (7,) of the micro features over every frame."""
    x = np.concatenate([s.micro for s in songs]).astype(np.float64)
    return x.mean(0), x.std(0)


def teacher_probability(epoch: int, config: TrainConfig) -> float:
    """Probability that a crop of ``epoch`` (0-based) is teacher-forced (module docstring)."""
    n = max(1, round(config.teacher * config.epochs))
    return float(np.clip(2.0 - epoch / n, 0.0, 1.0)) if epoch >= n else 1.0


def _crops(songs: list[SongFrames], length: int, rng: np.random.Generator):
    out = []
    for i, s in enumerate(songs):
        start = int(rng.integers(0, max(1, min(length, len(s) - length + 1))))
        for a in range(start, max(len(s) - length // 4, start + 1), length):
            out.append((i, a, min(a + length, len(s))))
    return [out[j] for j in rng.permutation(len(out))]


def make_batch(songs: list[SongFrames], crops, rng: np.random.Generator, p_teacher: float,
               noise: float) -> dict:
    """Padded tensors of a batch of ``(song index, start, stop)`` crops."""
    n = max(b - a for _, a, b in crops)
    bsz = len(crops)

    def z(*shape, dtype=np.float32):
        return np.zeros((bsz, n, *shape), dtype)

    arr = {k: z(d) for k, d in (("micro", 7), ("beat", 5), ("sect", 8), ("haz", 5),
                                 ("sect_true", 8), ("haz_clean", 5))}
    arr.update(beat_amp=z(), jump=z(dtype=bool), mask=z(dtype=bool))
    seg_ids = []
    for j, (i, a, b) in enumerate(crops):
        s, m = songs[i], b - a
        teacher = bool(rng.random() < p_teacher)
        arr["micro"][j, :m], arr["beat"][j, :m] = s.micro[a:b], s.beat[a:b]
        arr["sect"][j, :m], arr["haz"][j, :m] = conditioning(s, a, b, rng, teacher, noise)
        arr["haz_clean"][j, :m] = conditioning(s, a, b, rng, teacher, 0.0)[1]
        arr["sect_true"][j, :m] = s.sect_true[a:b]
        arr["beat_amp"][j, :m], arr["jump"][j, :m] = s.beat_amp[a:b], s.jump[a:b]
        arr["mask"][j, :m] = True
        seg_ids.append((s.segment[a:b], s.label[a:b]) if s.has_sections else None)
    n_seg = max([len(np.unique(x[0])) for x in seg_ids if x is not None] + [1])
    segments = np.zeros((bsz, n, n_seg), np.float32)
    seg_label = np.full((bsz, n_seg), -1, np.int64)
    for j, x in enumerate(seg_ids):
        if x is None:
            continue
        seg, lab = x
        for q, sid in enumerate(np.unique(seg)):
            where = seg == sid
            segments[j, :len(seg)][where, q] = 1.0
            seg_label[j, q] = lab[where][0]
    out = {k: torch.from_numpy(v) for k, v in arr.items()}
    out["segments"] = torch.from_numpy(segments)
    out["seg_label"] = torch.from_numpy(seg_label)
    out["sectioned"] = torch.tensor([x is not None for x in seg_ids])
    return out


def batch_losses(model: ControllerNet, batch: dict, switch: float = 0.0) -> dict:
    """The six losses (scalars) of a batch (:func:`make_batch`); ``switch`` the extra weight
    of the frames near a chorus switch in the section loss (``TrainConfig.w_section_switch``)."""
    out = model.sequence(batch["micro"], batch["beat"], batch["sect"], batch["haz"])
    mask = batch["mask"]
    result = {
        "pulse": losses.pulse_loss(losses.visual_change(out), batch["beat_amp"], mask),
        "smooth": losses.smoothness_loss(out, batch["jump"], mask),
    }
    sel = batch["sectioned"]
    if sel.any():
        sub = {k: v[sel] for k, v in out.items() if k != "state"}
        result["section"] = losses.section_loss(sub["c"], batch["sect_true"][sel], mask[sel],
                                                 switch)
        result["anticipation"] = losses.anticipation_loss(sub, batch["haz_clean"][sel],
                                                          batch["segments"][sel])
        result["variety"] = losses.variety_loss(sub, batch["segments"][sel],
                                                batch["seg_label"][sel])
        result["look"] = losses.look_loss(sub, batch["segments"][sel], batch["seg_label"][sel])
    else:
        zero = out["c"].sum() * 0.0
        result.update(section=zero, anticipation=zero, variety=zero, look=zero)
    return result


def train(songs: list[SongFrames], config: TrainConfig, log=print):
    """Train a model on ``songs``; returns it and the per-epoch loss history."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    mean, std = micro_stats(songs)
    model = ControllerNet(mean, std)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    weights = {n: getattr(config, f"w_{n}") for n in LOSS_NAMES}
    history = []
    for epoch in range(config.epochs):
        for group in opt.param_groups:
            group["lr"] = config.lr * 0.5 * (1.0 + np.cos(np.pi * epoch / config.epochs))
        p_teacher = teacher_probability(epoch, config)
        crops = _crops(songs, config.crop, rng)
        sums = dict.fromkeys(LOSS_NAMES, 0.0)
        t0 = time.perf_counter()
        nb = skipped = 0
        for k in range(0, len(crops), config.batch):
            batch = make_batch(songs, crops[k:k + config.batch], rng, p_teacher, config.noise)
            parts = batch_losses(model, batch, config.w_section_switch)
            total = sum(weights[n] * parts[n] for n in LOSS_NAMES)
            opt.zero_grad()
            total.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            if not (torch.isfinite(total) and torch.isfinite(norm)):
                skipped += 1  # a non-finite batch never reaches the weights
                continue
            opt.step()
            for n in LOSS_NAMES:
                sums[n] += float(parts[n].detach())
            nb += 1
        row = {"epoch": epoch + 1, "p_teacher": round(p_teacher, 3),
               **{n: round(sums[n] / max(nb, 1), 5) for n in LOSS_NAMES}, "skipped": skipped,
               "seconds": round(time.perf_counter() - t0, 1)}
        history.append(row)
        log(json.dumps(row))
    return model.eval(), history


def evaluate(model: ControllerNet, heldout: list[SongFrames]) -> dict:
    """Proxy metrics (:mod:`.proxy`) of the model and the analytic controller on the held-out
    songs' logged inputs: per song and pooled."""
    rows = {"model": [], "analytic": []}
    for song in heldout:
        rows["model"].append({"song": song.name, **proxy_metrics(model_controls(model, song),
                                                                  song)})
        rows["analytic"].append({"song": song.name,
                                 **proxy_metrics(analytic_controls(song), song)})
    return {k: {"pooled": pooled([{a: b for a, b in r.items() if a != "song"} for r in v]),
                "songs": v} for k, v in rows.items()}


def random_sequence(steps: int = 120, batch: int = 2, seed: int = 0):
    """Random contract inputs (B,T,n) on the corpus's scales: micro features ``N(-30, 10)``
    (dB-like; flux and centroid too, they are clipped by nothing here), a random phase with
    ``spb = 0.5``, random conf and downbeat flags, softmax section probabilities, uniform
    hazards."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(batch, steps, generator=g) * 2 * np.pi
    return (
        torch.randn(batch, steps, 7, generator=g) * 10 - 30,
        torch.stack([phase.sin(), phase.cos(), torch.full((batch, steps), -0.7),
                     torch.rand(batch, steps, generator=g),
                     (torch.rand(batch, steps, generator=g) > 0.7).float()], -1),
        torch.softmax(torch.randn(batch, steps, 8, generator=g) * 2, -1),
        torch.rand(batch, steps, 5, generator=g),
    )


def export_onnx(model: ControllerNet, contract: dict | None = None, parity_seq=None) -> bytes:
    """The model as ONNX bytes (module docstring, Export). ``parity_seq``: the four (B,T,n)
    input tensors of the parity check (default :func:`random_sequence`). ValueError if a
    check fails."""
    import onnx

    contract = load_contract() if contract is None else contract
    model = model.eval()
    seq = random_sequence() if parity_seq is None else parity_seq
    b = seq[0].shape[0]
    args = (*(x[:, 0] for x in seq), torch.zeros(b, STATE))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        for category in (DeprecationWarning, UserWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        torch.onnx.export(model, args, buf, dynamo=False, opset_version=OPSET,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_axes={n: {0: "B"} for n in INPUT_NAMES + OUTPUT_NAMES})
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = IR_VERSION
    proto.graph.name = "controller_v1"
    proto.doc_string = ("FractalSync Julia controller: GRU + fixed filters, one call per 60 Hz "
                        "render frame; contracts/v1.json models.controller.")
    onnx.checker.check_model(proto, full_check=True)
    validate_onnx_model(proto, "controller", contract)
    data = proto.SerializeToString()
    err = parity_error(data, model, seq)
    if err > PARITY_TOL:
        raise ValueError(f"export parity: ONNX differs from torch by {err:.3g} > {PARITY_TOL} "
                         "(relative to max(|torch value|, 1)) over a sequence")
    return data


def parity_error(data: bytes, model: ControllerNet, seq) -> float:
    """Max relative difference between onnxruntime and torch, frame by frame over ``seq``
    (four (B,T,n) input tensors) with each one's state carried from zeros."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    b, steps = seq[0].shape[:2]
    s_ort = np.zeros((b, STATE), np.float32)
    s_torch = torch.zeros(b, STATE)
    err = 0.0
    for k in range(steps):
        frame = [x[:, k] for x in seq]
        got = session.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, [
            *(f.numpy() for f in frame), s_ort], strict=True)))
        with torch.no_grad():
            want = model(*frame, s_torch)
        for a, w in zip(got, want, strict=True):
            w = w.numpy()
            err = max(err, float((np.abs(a - w) / np.maximum(np.abs(w), 1.0)).max()))
        s_ort, s_torch = got[1], want[1]
    return err


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.julia.controller_training.train",
                                description="Train the Julia controller and export it to ONNX.")
    p.add_argument("--work", type=Path, required=True, help="corpus cache directory")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--seeds", type=int, nargs=2, default=(300, 80), metavar=("FIRST", "N"),
                   help="generated training songs FIRST .. FIRST+N-1 (default 300 80)")
    p.add_argument("--recordings", type=Path, nargs="*",
                   default=[Path("../shared/audio") / r for r in DEFAULT_RECORDINGS],
                   help="real recordings (beats: the offline beat grid)")
    p.add_argument("--heldout", type=int, nargs="*", default=list(HELDOUT),
                   help="held-out songs of the proxy evaluation (never trained on)")
    p.add_argument("--validation", type=int, nargs="*", default=list(VALIDATION),
                   help="validation songs (proxy evaluation; the weights are chosen on them)")
    d = TrainConfig()
    for name, value in asdict(d).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return p


def main(argv=None) -> int:
    """Corpus, training, proxy evaluation, export, model card."""
    args = _parser().parse_args(argv)
    config = TrainConfig(**{k: getattr(args, k) for k in asdict(TrainConfig())})
    torch.set_num_threads(config.threads)
    seeds = list(range(args.seeds[0], args.seeds[0] + args.seeds[1]))
    for a, b, what in ((seeds, args.heldout, "training seeds overlap the held-out songs"),
                       (seeds, args.validation, "training seeds overlap the validation songs"),
                       (args.validation, args.heldout, "validation songs overlap the held-out")):
        if set(a) & set(b):
            raise SystemExit(f"train: {what} {sorted(set(a) & set(b))}")
    t0 = time.perf_counter()
    songs = build_corpus(args.work, seeds, args.recordings)
    heldout = build_corpus(args.work, args.heldout, (), sub="heldout")
    validation = build_corpus(args.work, args.validation, (), sub="validation")
    corpus_s = round(time.perf_counter() - t0, 1)
    t1 = time.perf_counter()
    model, history = train(songs, config)
    train_s = round(time.perf_counter() - t1, 1)
    metrics = evaluate(model, heldout)
    val_metrics = evaluate(model, validation) if validation else None
    print(json.dumps({k: v["pooled"] for k, v in (val_metrics or {}).items()}), flush=True)
    torch.save(model.state_dict(), Path(args.work) / "model.pt")
    first = heldout[0]
    data = export_onnx(model, parity_seq=tuple(torch.from_numpy(a[None, :1200]) for a in (
        first.micro, first.beat, first.sect_pred, first.haz_pred)))
    write_atomic(args.out, data)
    card = {
        "model": args.out.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "onnx": {"ir_version": IR_VERSION, "opset": OPSET, "contract": "v1 models.controller"},
        "command": " ".join([".venv/bin/python -m examples.julia.controller_training.train",
                             *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__, "config": asdict(config),
        "corpus": {"generated_seeds": [seeds[0], seeds[-1]],
                   "recordings": [Path(r).name for r in args.recordings],
                   "frames": int(sum(len(s) for s in songs)), "heldout_seeds": args.heldout,
                   "validation_seeds": args.validation},
        "corpus_seconds": corpus_s, "train_seconds": train_s,
        "final_losses": {n: history[-1][n] for n in LOSS_NAMES} if history else None,
        "history": history,
        "validation_proxy": ({k: v["pooled"] for k, v in val_metrics.items()}
                             if val_metrics else None),
        "heldout_proxy": {k: v["pooled"] for k, v in metrics.items()},
        "heldout_proxy_songs": {k: v["songs"] for k, v in metrics.items()},
    }
    write_atomic(args.out.with_suffix(".json"), json.dumps(card, indent=1) + "\n")
    print(json.dumps({"validation_proxy": card["validation_proxy"], "train_seconds": train_s,
                      "corpus_seconds": corpus_s, "sha256": card["sha256"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
