"""An ordinary training script (numpy only) made into a Blueno job by five lines marked BLUENO."""

import argparse
import json
import os

import numpy as np

from blueno import client  # BLUENO

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--out", default="out")
args = parser.parse_args()

# A tiny logistic regression on synthetic data.
rng = np.random.default_rng(0)
x = rng.normal(size=(400, 5))
y = (x @ np.array([1.5, -2.0, 0.5, 0.0, 1.0]) > 0).astype(float)
x_train, y_train, x_val, y_val = x[:300], y[:300], x[300:], y[300:]

os.makedirs(args.out, exist_ok=True)
checkpoint = os.path.join(args.out, "weights.npy")
w, start, best = np.zeros(5), 0, None
if client.resume_from():  # BLUENO: an interrupted run resumes from its last epoch
    with open(checkpoint + ".json") as handle:
        w, start = np.load(checkpoint), json.load(handle)["epoch"]


def loss_and_accuracy(w, x, y):
    p = 1 / (1 + np.exp(-(x @ w)))
    return float(-np.mean(y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9))), float(np.mean((p > 0.5) == y))


for epoch in range(start, args.epochs):
    for i in range(0, 300, 50):  # mini-batches
        xb, yb = x_train[i:i + 50], y_train[i:i + 50]
        p = 1 / (1 + np.exp(-(xb @ w)))
        w -= args.lr * xb.T @ (p - yb) / len(yb)
        client.log_metrics({"batch_loss": loss_and_accuracy(w, xb, yb)[0]}, step=epoch * 6 + i // 50 + 1)  # BLUENO
    np.save(checkpoint, w)
    with open(checkpoint + ".json", "w") as handle:
        json.dump({"epoch": epoch + 1}, handle)
    val_loss, val_accuracy = loss_and_accuracy(w, x_val, y_val)
    print(f"epoch {epoch + 1}: val_loss {val_loss:.4f} val_accuracy {val_accuracy:.3f}")
    if best is None or val_loss < best[1]:
        best = (epoch + 1, val_loss, val_accuracy)
    client.epoch_done(epoch + 1, {"val_loss": val_loss, "val_accuracy": val_accuracy},  # BLUENO
                      checkpoint=checkpoint)

client.result(final={"val_loss": val_loss, "val_accuracy": val_accuracy},  # BLUENO
              best={"val_loss": best[1], "val_accuracy": best[2]}, best_epoch=best[0], monitor="val_loss")
