"""Search distributions over parameter vectors.

Every distribution has ``sample(n)``, which returns ``n`` detached draws stacked on a new
leading dimension, and ``log_prob(x)``, which is differentiable with respect to the
distribution's parameters and sums over the event dimensions. That pair is all that
:func:`neuroes.expectation` needs to estimate gradients by the score-function trick.

Sampling draws from the ``torch.Generator`` a distribution was given (or one seeded from an
integer); no global random state is touched.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from neuroes import noise
from neuroes.noise import Draws, NoiseTable

Seed = int | torch.Generator | None


def make_generator(seed: Seed, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` from an integer seed, an existing generator, or ``None`` (seed 0)."""
    if isinstance(seed, torch.Generator):
        return seed
    generator = torch.Generator(device=device)
    generator.manual_seed(0 if seed is None else int(seed))
    return generator


def _as_tensor(value: float | Tensor, like: Tensor, name: str) -> Tensor:
    tensor = value if isinstance(value, Tensor) else torch.tensor(float(value))
    tensor = tensor.to(device=like.device, dtype=like.dtype) if not tensor.requires_grad else tensor
    if not torch.all(tensor.detach() > 0):
        raise ValueError(f"{name} must be positive everywhere, got {tensor.detach().min().item()}")
    return tensor


class Distribution:
    """The ``sample``/``log_prob`` contract shared by all search distributions."""

    generator: torch.Generator

    @property
    def event_shape(self) -> torch.Size:
        """The shape of one draw."""
        raise NotImplementedError

    def sample(self, n: int) -> Tensor:
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class Normal(Distribution):
    """Gaussian search distribution N(mu, sigma^2 I) or N(mu, diag(sigma^2)).

    Args:
        mu: the mean, any shape; it usually requires grad.
        sigma: a positive float, 0-d tensor (isotropic) or a tensor broadcastable to ``mu``
            (diagonal). When it requires grad it is learned. To keep a learned sigma positive,
            learn its logarithm and pass ``log_sigma.exp()``: gradients flow through.
        mirrored: draw antithetic pairs; member ``2k`` is ``mu + sigma*eps_k`` and member
            ``2k+1`` is ``mu - sigma*eps_k``.
        generator: a ``torch.Generator`` or an integer seed.

    Besides ``sample``, members can be described by integer seeds and signs
    (:meth:`sample_seeds`) and rebuilt anywhere from ``(mu, sigma, seed, sign)`` with
    :meth:`rebuild`, which reads the noise from a shared :class:`NoiseTable`. This is how
    remote workers regenerate their members without receiving parameter vectors.
    """

    def __init__(
        self,
        mu: Tensor,
        sigma: float | Tensor,
        mirrored: bool = False,
        generator: Seed = None,
    ) -> None:
        if not isinstance(mu, Tensor) or not mu.is_floating_point():
            raise ValueError(f"mu must be a floating-point tensor, got {type(mu).__name__}")
        self.mu = mu
        self.sigma = _as_tensor(sigma, mu, "sigma")
        try:
            torch.broadcast_shapes(self.sigma.shape, mu.shape)
        except RuntimeError:
            raise ValueError(
                f"sigma of shape {tuple(self.sigma.shape)} does not broadcast to mu of shape "
                f"{tuple(mu.shape)}; pass a float, a 0-d tensor or a tensor of mu's shape"
            ) from None
        self.mirrored = mirrored
        self.generator = make_generator(generator, mu.device)

    @property
    def event_shape(self) -> torch.Size:
        return self.mu.shape

    def _check_n(self, n: int) -> int:
        if n < 1:
            raise ValueError(f"the number of samples must be positive, got {n}")
        if self.mirrored and n % 2:
            raise ValueError(f"mirrored sampling needs an even number of samples, got {n}")
        return n // 2 if self.mirrored else n

    def sample(self, n: int) -> Tensor:
        """``n`` draws of shape ``(n, *mu.shape)``, detached from the graph."""
        draws = self._check_n(n)
        eps = torch.randn(
            (draws, *self.mu.shape),
            generator=self.generator,
            device=self.mu.device,
            dtype=self.mu.dtype,
        )
        if self.mirrored:
            eps = torch.stack([eps, -eps], dim=1).reshape(n, *self.mu.shape)
        return (self.mu.detach() + self.sigma.detach() * eps).detach()

    def log_prob(self, x: Tensor | Draws) -> Tensor:
        """Log-density of each draw in ``x`` (shape ``(n, *mu.shape)``, or :class:`Draws` of
        this distribution's noise), summed over the event. For ``Draws`` the gradients come
        from the noise (:func:`neuroes.noise.log_prob`), without autograd over ``(n, d)``."""
        if isinstance(x, Draws):
            return noise.log_prob(self.mu, self.sigma, x)
        if x.shape[1:] != self.mu.shape:
            raise ValueError(
                f"samples have event shape {tuple(x.shape[1:])}, the distribution has "
                f"{tuple(self.mu.shape)}"
            )
        sigma = self.sigma.expand(self.mu.shape)
        z = (x - self.mu) / sigma
        per_dim = -0.5 * z.pow(2) - sigma.log() - 0.5 * math.log(2 * math.pi)
        return per_dim.reshape(len(x), -1).sum(-1)

    def entropy(self) -> Tensor:
        sigma = self.sigma.expand(self.mu.shape)
        return (sigma.log() + 0.5 * math.log(2 * math.pi * math.e)).sum()

    def sample_seeds(self, n: int) -> tuple[Tensor, Tensor]:
        """Describe ``n`` members by integer noise seeds and signs (+1/-1) from the generator.

        Mirrored pairs share a seed with opposite signs. :meth:`rebuild` turns them into vectors.
        """
        draws = self._check_n(n)
        seeds = torch.randint(0, 2**62, (draws,), generator=self.generator, device=self.mu.device)
        signs = torch.ones(draws, dtype=torch.int8, device=self.mu.device)
        if self.mirrored:
            seeds = seeds.repeat_interleave(2)
            signs = torch.stack([signs, -signs], dim=1).reshape(n)
        return seeds.cpu(), signs.cpu()

    def rebuild(
        self,
        seeds: Tensor,
        signs: Tensor,
        table: NoiseTable | None = None,
        out: Tensor | None = None,
    ) -> Tensor:
        """Members ``mu + sign * sigma * table.noise(seed)``, shape ``(len(seeds), *mu.shape)``,
        written into ``out`` (``(len(seeds), d)``, CPU float32) when given.

        A member with sign 0 is ``mu`` itself, bit for bit (the mean policy's rows).
        """
        table = table or NoiseTable()
        mu, sigma = self.mu.detach(), self.sigma.detach()
        members = table.noise(seeds, mu.numel(), out=out).to(mu.device, mu.dtype)
        members = members.view(len(seeds), *mu.shape)
        members.mul_(sigma).mul_(signs.to(members).view(-1, *[1] * mu.dim())).add_(mu)
        at_mean = signs.to(members.device) == 0
        if at_mean.any():
            members[at_mean] = mu
        return members


class MixtureNormal(Distribution):
    """An equal- or learned-weight mixture of Gaussians with means ``mus`` (K, *event).

    Args:
        mus: component means, stacked on the first dimension.
        sigma: shared positive float or tensor broadcastable to one component's shape.
        logits: optional (K,) mixture logits; uniform weights when omitted.
    """

    def __init__(
        self,
        mus: Tensor,
        sigma: float | Tensor,
        logits: Tensor | None = None,
        generator: Seed = None,
    ) -> None:
        if mus.dim() < 1:
            raise ValueError("mus must stack the component means on dimension 0")
        self.mus = mus
        self.sigma = _as_tensor(sigma, mus, "sigma")
        k = len(mus)
        self.logits = logits if logits is not None else torch.zeros(k, device=mus.device)
        if self.logits.shape != (k,):
            raise ValueError(f"logits must have shape ({k},), got {tuple(self.logits.shape)}")
        self.generator = make_generator(generator, mus.device)

    @property
    def event_shape(self) -> torch.Size:
        return self.mus.shape[1:]

    def sample(self, n: int) -> Tensor:
        if n < 1:
            raise ValueError(f"the number of samples must be positive, got {n}")
        probs = self.logits.detach().softmax(0)
        component = torch.multinomial(probs, n, replacement=True, generator=self.generator)
        eps = torch.randn(
            (n, *self.mus.shape[1:]),
            generator=self.generator,
            device=self.mus.device,
            dtype=self.mus.dtype,
        )
        return (self.mus.detach()[component] + self.sigma.detach() * eps).detach()

    def log_prob(self, x: Tensor) -> Tensor:
        components = [Normal(mu, self.sigma).log_prob(x) for mu in self.mus]
        weighted = torch.stack(components, dim=1) + self.logits.log_softmax(0)
        return weighted.logsumexp(dim=1)


class Bernoulli(Distribution):
    """Independent Bernoulli variables with learnable ``logits``; samples are 0/1 floats."""

    def __init__(self, logits: Tensor, generator: Seed = None) -> None:
        self.logits = logits
        self.generator = make_generator(generator, logits.device)

    @property
    def event_shape(self) -> torch.Size:
        return self.logits.shape

    def sample(self, n: int) -> Tensor:
        if n < 1:
            raise ValueError(f"the number of samples must be positive, got {n}")
        probs = torch.sigmoid(self.logits.detach()).expand(n, *self.logits.shape)
        return torch.bernoulli(probs, generator=self.generator)

    def log_prob(self, x: Tensor) -> Tensor:
        logits = self.logits.expand_as(x)
        per_var = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x.to(logits.dtype), reduction="none"
        )
        return per_var.reshape(len(x), -1).sum(-1)

    def entropy(self) -> Tensor:
        p = torch.sigmoid(self.logits)
        return torch.nn.functional.binary_cross_entropy_with_logits(self.logits, p, reduction="sum")


class Categorical(Distribution):
    """Independent categorical variables with learnable ``logits`` of shape (*event, K).

    Samples are int64 indices of shape ``(n, *event)``.
    """

    def __init__(self, logits: Tensor, generator: Seed = None) -> None:
        if logits.dim() < 1:
            raise ValueError("logits must have the categories on their last dimension")
        self.logits = logits
        self.generator = make_generator(generator, logits.device)

    @property
    def event_shape(self) -> torch.Size:
        return self.logits.shape[:-1]

    def sample(self, n: int) -> Tensor:
        if n < 1:
            raise ValueError(f"the number of samples must be positive, got {n}")
        probs = self.logits.detach().softmax(-1).reshape(-1, self.logits.shape[-1])
        draws = torch.multinomial(probs, n, replacement=True, generator=self.generator)
        return draws.T.reshape(n, *self.logits.shape[:-1])

    def log_prob(self, x: Tensor) -> Tensor:
        log_probs = self.logits.log_softmax(-1).expand(len(x), *self.logits.shape)
        chosen = log_probs.gather(-1, x.long().unsqueeze(-1))
        return chosen.reshape(len(x), -1).sum(-1)

    def entropy(self) -> Tensor:
        log_probs = self.logits.log_softmax(-1)
        return -(log_probs.exp() * log_probs).sum()

    def mode(self) -> Tensor:
        """The most probable draw: the argmax of every variable."""
        return self.logits.detach().argmax(-1)


class TopK(Distribution):
    """``k`` distinct categories drawn without replacement from ``softmax(logits)``.

    ``logits`` has shape (*batch, K); a draw holds the int64 indices (*batch, k) in the order
    they were drawn. Sampling is Gumbel-top-k: the ``k`` largest of ``logits + Gumbel noise``
    in decreasing order, which is exactly the sequential draw without replacement.
    ``log_prob`` is the Plackett-Luce probability of that ordered draw,
    ``sum_j logit[i_j] - logsumexp(logits without i_1 .. i_{j-1})``. The order is part of the
    draw, so the score-function gradient of a value that depends only on the chosen set is
    unbiased; the set's own probability (a sum over k! orders) is never needed.
    """

    def __init__(self, logits: Tensor, k: int, generator: Seed = None) -> None:
        if logits.dim() < 1 or not 1 <= k <= logits.shape[-1]:
            raise ValueError(
                f"k must be between 1 and the number of categories, got k={k} for logits of "
                f"shape {tuple(logits.shape)}"
            )
        self.logits, self.k = logits, k
        self.generator = make_generator(generator, logits.device)

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size((*self.logits.shape[:-1], self.k))

    def sample(self, n: int) -> Tensor:
        if n < 1:
            raise ValueError(f"the number of samples must be positive, got {n}")
        logits = self.logits.detach()
        exponential = torch.empty((n, *logits.shape), dtype=logits.dtype, device=logits.device)
        gumbel = -exponential.exponential_(generator=self.generator).log()
        return (logits + gumbel).topk(self.k).indices

    def log_prob(self, x: Tensor) -> Tensor:
        x = x.long()
        logits = self.logits.expand(len(x), *self.logits.shape)
        chosen = logits.gather(-1, x)
        # The mass left before draw j: the never-drawn categories plus draws j, j+1, ..., k
        # (a sum of positive terms, so no cancellation), in O(K + k) per draw.
        never = logits.scatter(-1, x, -math.inf).logsumexp(-1, keepdim=True)
        later = chosen.flip(-1).logcumsumexp(-1).flip(-1)
        remaining = torch.logaddexp(later, never)
        return (chosen - remaining).reshape(len(x), -1).sum(-1)

    def mode(self) -> Tensor:
        """The most probable draw: the ``k`` largest logits, in decreasing order."""
        return self.logits.detach().topk(self.k).indices


class Joint(Distribution):
    """Independent components drawn together; ``log_prob`` is the sum of theirs.

    A draw is one floating tensor (n, total): each component's draw flattened and the results
    concatenated, discrete indices included as exact integers (below 2^24 in float32). It is
    therefore an ordinary sample for :func:`neuroes.expectation`, which then trains every
    component in one backward pass. :meth:`split` returns the parts in their event shapes.
    """

    def __init__(self, *components: Distribution) -> None:
        if not components:
            raise ValueError("a joint distribution needs at least one component")
        self.components = components
        self.sizes = [math.prod(c.event_shape) for c in components]

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size((sum(self.sizes),))

    @staticmethod
    def join(*parts: Tensor) -> Tensor:
        """One draw of each component (n, *event) -> the joint draw (n, total)."""
        floats = [p.dtype for p in parts if p.is_floating_point()]
        dtype = functools.reduce(torch.promote_types, floats, torch.float32)
        return torch.cat([p.reshape(len(p), -1).to(dtype) for p in parts], dim=1)

    def split(self, x: Tensor) -> list[Tensor]:
        """The joint draw (n, total) -> each component's part (n, *event), as floats."""
        parts = zip(x.split(self.sizes, dim=1), self.components, strict=True)
        return [p.reshape(len(x), *c.event_shape) for p, c in parts]

    def sample(self, n: int) -> Tensor:
        return self.join(*(c.sample(n) for c in self.components))

    def log_prob(self, x: Tensor) -> Tensor:
        parts = zip(self.components, self.split(x), strict=True)
        return sum(c.log_prob(p) for c, p in parts)

    def mode(self) -> Tensor:
        """The joint draw of every component's mode (components must have ``mode``)."""
        return self.join(*(c.mode().unsqueeze(0) for c in self.components))[0]
