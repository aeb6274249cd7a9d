"""Re-identification quality of the embedding head, on ground-truth objects of held-out videos.

For each checkpoint: the embedding head runs on the test split (held-out
object images; ``--split-seed`` picks another of the generator's held-out
splits), every labelled object's embedding is read at its centre cell (as in
training), and ``mtmnv3.evaluation.reid.within_video_reid`` scores how well
the embeddings separate an object from the *other objects of its video* (the
distractors association faces): ROC AUC of same- vs different-identity pairs,
rank-1 re-identification after 1 and 10 frames, mean cosine of both kinds of
pair. Detections play no part, so the numbers isolate the embeddings from the
detector and the tracker.

Usage: python benchmarks/embedding_quality.py [--model CONFIG CHECKPOINT ...] [--split-seed 0]
           [--max-batches N]
(default: the ``make demo`` checkpoint with the default config; the test split
is the first model's config's)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def object_embeddings(model, loader, head: str, max_batches: int | None = None):
    """(embeddings, ids, videos, frames) of every labelled object of ``loader``'s samples."""
    from mtmnv3.heads.centers import labelled_object_cells

    emb_head = model.heads[head]
    embs, ids, videos, frames = [], [], [], []
    for n, data in enumerate(loader):
        if max_batches is not None and n >= max_batches:
            break
        data = model.data_preprocessor(data, False)
        emb_map = model.head_outputs(data["inputs"], [head])[head]
        _, _, h, w = emb_map.shape
        samples = data["data_samples"]
        for b, target, cells in labelled_object_cells(
            samples, "track", "instance_ids", emb_head.stride, h, w
        ):
            embs.append(emb_head.gather(emb_map[b], cells))
            ids.append(target)
            meta = samples[b].metainfo
            videos.append(torch.full((len(target),), int(meta["video_id"])))
            frames.append(torch.full((len(target),), int(meta["frame_id"])))
    if not embs:
        raise ValueError("the split has no objects labelled with identities (instance_ids)")
    return torch.cat(embs), torch.cat(ids), torch.cat(videos), torch.cat(frames)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", nargs=2, action="append", metavar=("CONFIG", "CHECKPOINT"),
        help="a config and a checkpoint of its model; repeat to compare",
    )  # fmt: skip
    p.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="generator seed of the test split (default: the config's)",
    )
    p.add_argument("--max-batches", type=int, default=None)
    p.add_argument("--head", default=None, help="embedding head name (default: the model's track head)")
    args = p.parse_args(argv)
    if args.max_batches is not None and args.max_batches < 1:
        p.error(f"--max-batches must be >= 1, got {args.max_batches}")
    models = args.model or [
        (str(ROOT / "configs/mtmnv3_small_3task_synth.py"), str(ROOT / "work_dirs/demo/model.pth"))
    ]
    missing = [f for pair in models for f in pair if not Path(f).is_file()]
    if missing:
        p.error(f"file not found: {', '.join(missing)}")

    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mtmnv3.heads import EMBEDDING, heads_by_task

    from mtmnv3.apis import init_model
    from mtmnv3.core.profiling import format_table
    from mtmnv3.engine import load_config
    from mtmnv3.evaluation.reid import within_video_reid

    cfg = load_config(models[0][0], None)
    init_default_scope(cfg.get("default_scope", "mtmnv3"))
    loader_cfg = {**cfg.test_dataloader, "num_workers": 0, "persistent_workers": False}
    if args.split_seed is not None:
        loader_cfg["dataset"] = {**loader_cfg["dataset"], "seed": args.split_seed}
    loader = Runner.build_dataloader(loader_cfg)

    rows = []
    for config, ckpt in models:
        model = init_model(config, ckpt)
        head = args.head or heads_by_task(model.heads).get(EMBEDDING)
        if head is None or head not in model.heads:
            p.error(f"no embedding head {head!r} in the model; heads are {list(model.heads)}")
        r = within_video_reid(*object_embeddings(model, loader, head, args.max_batches))
        rows.append([Path(ckpt).parent.name + "/" + Path(ckpt).name, f"{r['auc']:.4f}", f"{r['rank1@1']:.4f}",
                     f"{r['rank1@10']:.4f}", f"{r['same_cos']:.3f}", f"{r['diff_cos']:.3f}",
                     int(r["pairs_same"]), int(r["queries@1"])])  # fmt: skip
    seed = loader_cfg["dataset"].get("seed")
    print(f"\nWithin-video re-identification, test split seed {seed}, ground-truth objects\n")
    print(
        format_table(
            ["checkpoint", "AUC", "rank-1 @1", "rank-1 @10", "same cos", "diff cos", "same pairs", "queries"],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
