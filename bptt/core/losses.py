"""Losses for training: each returns (loss, dL/dprediction), averaged like PyTorch's reduction='mean'."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .types import Array


def _float_pair(pred: ArrayLike, target: ArrayLike, name: str) -> tuple[Array, Array]:
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.dtype.kind != "f":
        raise ValueError(f"{name}: predictions must be a float array, got dtype {pred.dtype}")
    if pred.shape != target.shape:
        raise ValueError(f"{name}: predictions have shape {pred.shape} but targets {target.shape}")
    if pred.size == 0:
        raise ValueError(f"{name}: empty predictions")
    return pred, target.astype(pred.dtype, copy=False)


def mse(pred: ArrayLike, target: ArrayLike) -> tuple[float, Array]:
    """Mean squared error over every element, as PyTorch's mse_loss (reduction "mean").

    Parameters
    ----------
    pred : ndarray of float, any shape
    target : array_like, the same shape

    Returns
    -------
    loss : float
    grad : ndarray, pred's shape
        dL/dpred = 2 (pred - target) / pred.size.

    Raises
    ------
    ValueError
        If the shapes differ, pred is not a float array, or it is empty.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> loss, grad = bptt.mse(np.array([1.0, 3.0]), np.array([0.0, 1.0]))
    >>> loss, grad.tolist()
    (2.5, [1.0, 2.0])
    """
    pred, target = _float_pair(pred, target, "mse")
    diff = pred - target
    return float(np.mean(diff * diff)), (2.0 / diff.size) * diff


def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> tuple[float, Array]:
    """Cross-entropy of integer labels (...) under softmax(logits) (..., K), mean over labels, as
    PyTorch's cross_entropy; stable for any logits.

    Parameters
    ----------
    logits : ndarray of float, shape (..., K)
    labels : ndarray of int, shape (...), each in [0, K)

    Returns
    -------
    loss : float
    grad : ndarray, shape (..., K)
        (softmax(logits) - onehot(labels)) / labels.size.

    Raises
    ------
    ValueError
        If the shapes do not match, labels are not integers or lie outside [0, K).

    Examples
    --------
    >>> import numpy as np, bptt
    >>> loss, grad = bptt.softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    >>> round(loss, 6) == round(float(np.log(4)), 6), grad.shape
    (True, (2, 4))
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


def sigmoid_binary_cross_entropy(logits: ArrayLike, targets: ArrayLike) -> tuple[float, Array]:
    """Binary cross-entropy of targets in [0, 1] under sigmoid(logits), mean over elements, as
    PyTorch's binary_cross_entropy_with_logits: ``max(z, 0) - z y + log(1 + exp(-|z|))``, stable for any z.

    Parameters
    ----------
    logits : ndarray of float, any shape
    targets : array_like, the same shape, values in [0, 1]

    Returns
    -------
    loss : float
    grad : ndarray, logits' shape
        (sigmoid(logits) - targets) / logits.size.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> loss, grad = bptt.sigmoid_binary_cross_entropy(np.zeros(2), np.array([0.0, 1.0]))
    >>> round(loss, 6), grad.tolist()
    (0.693147, [0.25, -0.25])
    """
    z, y = _float_pair(logits, targets, "sigmoid_binary_cross_entropy")
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    prob = 0.5 * np.tanh(0.5 * z) + 0.5
    return float(loss.mean()), (prob - y) / z.size
