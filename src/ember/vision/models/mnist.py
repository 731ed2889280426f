"""The small ResNet of the seeds' lesson 7 for 28x28 grey digits (the `ember demo` model)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ember.learner.export import register_model_factory

__all__ = ["mnist_resnet"]


@register_model_factory("mnist_resnet")
def mnist_resnet(n_out: int = 10, width: int = 1) -> nn.Sequential:
    """A small ResNet for 28x28 grey digits: five stride-2 convolutions with a residual block after each of the
    first four, down to a ``1 x 1`` map of `n_out` logits.

    With ``width=1`` it is the lesson-7 network of the seeds (8, 16, 32, 16 channels, 41k parameters);
    `width` multiplies the channels.
    """
    from ember.layers import ConvLayer, Flatten, res_block

    def conv2(ni: int, nf: int, **kwargs: Any) -> nn.Module:
        return ConvLayer(ni, nf, stride=2, **kwargs)

    a, b, c = 8 * width, 16 * width, 32 * width
    return nn.Sequential(
        conv2(1, a),  # (B, a, 14, 14)
        res_block(a),
        conv2(a, b),  # (B, b, 7, 7)
        res_block(b),
        conv2(b, c),  # (B, c, 4, 4)
        res_block(c),
        conv2(c, b),  # (B, b, 2, 2)
        res_block(b),
        conv2(b, n_out, act_cls=None),  # (B, n_out, 1, 1): logits, so no ReLU
        Flatten(),  # (B, n_out)
    )
