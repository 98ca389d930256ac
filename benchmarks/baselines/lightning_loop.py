"""Baseline (d): a Lightning `Trainer` on the paper CNN, with Lightning's default settings.

A `LightningModule` wraps `PaperCNN`: `training_step` returns the cross-entropy and logs it
with `self.log` (Lightning's documented pattern), `configure_optimizers` returns Adam(1e-3).
Data: the images normalised once into a float tensor (N, 1, 28, 28) in a `TensorDataset`,
`DataLoader(batch_size=2048, shuffle=True)` with the default `num_workers=0`.
`Trainer(accelerator="cpu", devices=1, max_epochs=E)` with the progress bar, checkpointing,
logger and model summary switched off so that none of them costs time; everything else
(precision "32-true", contiguous memory format, glibc allocator defaults) is Lightning's and
torch's default. Only the thread count is set: `torch.set_num_threads(--threads)`.

Epoch time is taken by a Callback from `on_train_epoch_start` to `on_train_epoch_end`.
Prints one JSON line.
"""

from __future__ import annotations

import json
import logging
import time
import warnings

import torch
import torch.nn.functional as F
from _cli import parse_args  # noqa: I001 - the sibling module beside this script
from torch.utils.data import DataLoader, TensorDataset

from parallel_vision.data import load
from parallel_vision.models.torch_cnn import PaperCNN

MEAN, STD = 0.1307, 0.3081


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])

    import lightning as L

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")  # "num_workers=0 may be a bottleneck" etc.
    torch.set_num_threads(args.threads)
    L.seed_everything(args.seed, verbose=False)

    def tensors(split: str, limit: int | None) -> TensorDataset:
        x, y = load("mnist", split, args.data_dir)
        x = torch.from_numpy(x[:limit]).float().div(255).sub(MEAN).div(STD).unsqueeze(1)
        return TensorDataset(x, torch.from_numpy(y[:limit]))

    train, test = tensors("train", args.limit_train), tensors("test", args.limit_test)

    class LitCNN(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = PaperCNN()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            x, y = batch
            loss = F.cross_entropy(self.model(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    times: list[float] = []

    class EpochTimer(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):  # type: ignore[no-untyped-def]
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
            times.append(time.perf_counter() - self.start)

    module = LitCNN()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=args.epochs,
        enable_progress_bar=False,
        enable_checkpointing=False,
        logger=False,
        enable_model_summary=False,
        callbacks=[EpochTimer()],
    )
    trainer.fit(module, DataLoader(train, batch_size=args.batch_size, shuffle=True))

    module.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(test, batch_size=2000):
            correct += int((module(x).argmax(1) == y).sum())
    images = [len(train)] * len(times)  # drop_last=False: every image, the last batch partial
    steady_t, steady_n = times[1:] or times, images[1:] or images
    print(json.dumps({
        "baseline": "lightning",
        "epoch_times_s": times,
        "epoch_images": images,
        "images_per_s_excl_warmup": sum(steady_n) / sum(steady_t),
        "test_accuracy": correct / len(test),
        "threads": torch.get_num_threads(),
        "lightning_version": L.__version__,
        "torch_version": torch.__version__,
    }))


if __name__ == "__main__":
    main()
