"""Losses for training: each returns (loss, dL/dprediction), averaged like PyTorch's reduction='mean'."""

from __future__ import annotations

import numpy as np


def _float_pair(pred, target, name: str):
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.dtype.kind != "f":
        raise ValueError(f"{name}: predictions must be a float array, got dtype {pred.dtype}")
    if pred.shape != target.shape:
        raise ValueError(f"{name}: predictions have shape {pred.shape} but targets {target.shape}")
    if pred.size == 0:
        raise ValueError(f"{name}: empty predictions")
    return pred, target.astype(pred.dtype, copy=False)


def mse(pred, target):
    """Mean squared error over every element. Returns (loss, dL/dpred)."""
    pred, target = _float_pair(pred, target, "mse")
    diff = pred - target
    return float(np.mean(diff * diff)), (2.0 / diff.size) * diff


def softmax_cross_entropy(logits, labels):
    """Cross-entropy of integer labels (...) under softmax(logits) (..., K), mean over labels.

    Returns (loss, dL/dlogits) with dL/dlogits = (softmax - onehot) / count.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.dtype.kind != "f" or logits.ndim < 1:
        raise ValueError(f"softmax_cross_entropy: logits must be a float array (..., K), got {logits.dtype} {logits.shape}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"softmax_cross_entropy: labels must have shape {logits.shape[:-1]} (logits without the "
            f"class axis), got {labels.shape}"
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(f"softmax_cross_entropy: labels must be integers, got dtype {labels.dtype}")
    K = logits.shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= K):
        raise ValueError(f"softmax_cross_entropy: labels must lie in [0, {K}), got [{labels.min()}, {labels.max()}]")
    shifted = logits - logits.max(axis=-1, keepdims=True)  # no overflow in exp
    log_z = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    log_p = shifted - log_z
    picked = np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
    count = labels.size
    grad = np.exp(log_p)
    np.put_along_axis(grad, labels[..., None], np.take_along_axis(grad, labels[..., None], -1) - 1, -1)
    return float(-picked.mean()), grad / count


def sigmoid_binary_cross_entropy(logits, targets):
    """Binary cross-entropy of targets in [0, 1] under sigmoid(logits), mean over elements.

    Computed as max(z, 0) - z y + log(1 + exp(-|z|)), stable for any z. Returns (loss, dL/dlogits).
    """
    z, y = _float_pair(logits, targets, "sigmoid_binary_cross_entropy")
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    prob = 0.5 * np.tanh(0.5 * z) + 0.5
    return float(loss.mean()), (prob - y) / z.size
