"""The discretized logistic's element-wise work with its gradients computed in the same pass as the value (a custom
autograd Function), for lae.likelihoods.DiscretizedLogistic.

Autograd would store some twenty intermediates of the energy's forward and redo a chain of element-wise backward
kernels on every backward pass; LAE backpropagates through each energy evaluation twice (the z-gradient of the ALD
step, then the training loss). Here the forward computes the value and the derivative factors at once, from the same
intermediates, and every backward pass is one multiplication (and, for the log-scale, one reduction). The bin-width
term log(1 - exp(-1/(255 s))) depends on the scale alone, so it is computed per pixel, not per element. Second
derivatives (lae.proposals' Laplace Hessian: `create_graph=True`) differentiate the reference formula with autograd,
so they are exact too.

The Bernoulli energy has no fused form here: one softplus is its whole forward, and a Function that also stored
sigmoid(s l) measured 0-4.5% slower per training step than autograd (docs/performance.md).

Shapes: x (N, P) data, mean (..., N, P), log_scale (P,) or (1,); outputs (..., N) nats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HALF_BIN = 0.5 / 255.0  # half the width of an 8-bit bin on [0, 1]


def logistic_masks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(not_top, not_bottom) for 8-bit x (N, P): 1.0 where the pixel is below the top bin (x < 1 - 1/510), and where
    it is above the bottom bin (x > 1/510); 0.0 elsewhere. The middle bins have both."""
    return (x < 1.0 - HALF_BIN).to(x.dtype), (x > HALF_BIN).to(x.dtype)


def _bin_edges(x, mean, log_scale):
    """a = (x - mean + 1/510) / s and b = (x - mean - 1/510) / s: the standardized upper and lower bin edges."""
    inv_s = torch.exp(-log_scale)
    centered = x - mean
    return inv_s, inv_s * (centered + HALF_BIN), inv_s * (centered - HALF_BIN)


def logistic_edges_reference(x, mean, log_scale, not_top, not_bottom) -> torch.Tensor:
    """The discretized logistic's mean-dependent part, -sum_p [not_top softplus(-a) + not_bottom softplus(b)]:
    (..., N, P) -> (..., N). With the bin-width term (logistic_width) it is log p(x | mean): log sigmoid(a) in the
    bottom bin, log (1 - sigmoid(b)) in the top bin, log (sigmoid(a) - sigmoid(b)) = log sigmoid(a) +
    log sigmoid(-b) + log(1 - exp(-(a - b))) in between, where a - b = 1 / (255 s) depends on the scale alone."""
    _, a, b = _bin_edges(x, mean, log_scale)
    return -(F.softplus(-a) * not_top + F.softplus(b) * not_bottom).sum(-1)


def logistic_width(log_scale: torch.Tensor, middle: torch.Tensor) -> torch.Tensor:
    """sum_p middle_p log(1 - exp(-1 / (255 s_p))): the bin-width term of the middle bins, (N,) for middle (N, P)
    (1.0 in the middle bins), log_scale (P,) or (1,); differentiable in log_scale."""
    width = torch.log(-torch.expm1(-2.0 * HALF_BIN * torch.exp(-log_scale)))  # (P,) or (1,)
    return middle @ width if width.numel() > 1 else middle.sum(-1) * width


class _LogisticEdges(torch.autograd.Function):
    """logistic_edges_reference with the derivatives in mean and log_scale stored by the forward pass:
    d/da = not_top sigmoid(-a), d/db = -not_bottom sigmoid(b); da/dmean = db/dmean = -1/s, da/dlog s = -a,
    db/dlog s = -b."""

    @staticmethod
    def forward(ctx, mean, log_scale, x, not_top, not_bottom):
        inv_s, a, b = _bin_edges(x, mean, log_scale)
        value = -(F.softplus(-a).mul_(not_top) + F.softplus(b).mul_(not_bottom)).sum(-1)
        up, down = torch.sigmoid(-a).mul_(not_top), torch.sigmoid(b).mul_(not_bottom)
        d_mean = (down - up).mul_(inv_s) if ctx.needs_input_grad[0] else None
        d_log_scale = (b * down).sub_(a * up) if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(mean, log_scale, x, not_top, not_bottom, d_mean, d_log_scale)
        return value

    @staticmethod
    def backward(ctx, grad):
        mean, log_scale, x, not_top, not_bottom, d_mean, d_log_scale = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        if torch.is_grad_enabled():  # create_graph: differentiate the reference formula (second derivatives)
            wanted = [t for t, w in zip((mean, log_scale), ctx.needs_input_grad[:2]) if w]
            value = logistic_edges_reference(x, mean, log_scale, not_top, not_bottom)
            grads = iter(torch.autograd.grad(value, wanted, grad, create_graph=True))
            return *(next(grads) if w else None for w in ctx.needs_input_grad[:2]), None, None, None
        grad_mean = g * d_mean if ctx.needs_input_grad[0] else None
        grad_log_scale = None
        if ctx.needs_input_grad[1]:
            per_pixel = (g * d_log_scale).reshape(-1, d_log_scale.shape[-1]).sum(0)  # (P,)
            grad_log_scale = per_pixel.sum().reshape(log_scale.shape) if log_scale.numel() == 1 else per_pixel
        return grad_mean, grad_log_scale, None, None, None


def logistic_edges(x, mean, log_scale, not_top, not_bottom) -> torch.Tensor:
    """logistic_edges_reference, its gradients in mean and log_scale from the forward pass (x that requires a gradient
    takes the reference formula; the masks are constants)."""
    if not (torch.is_grad_enabled() and (mean.requires_grad or log_scale.requires_grad)) or x.requires_grad:
        return logistic_edges_reference(x, mean, log_scale, not_top, not_bottom)
    return _LogisticEdges.apply(mean, log_scale, x, not_top, not_bottom)


def discretized_logistic(x, mean, log_scale, masks=None) -> torch.Tensor:
    """log p(x | mean) of the discretized logistic with log-scale log_scale (P,) or (1,), in nats: (..., N, P) ->
    (..., N). masks: logistic_masks(x), when the caller has them."""
    not_top, not_bottom = logistic_masks(x) if masks is None else masks
    edges = logistic_edges(x, mean, log_scale, not_top, not_bottom)
    return edges + logistic_width(log_scale, not_top * not_bottom)
