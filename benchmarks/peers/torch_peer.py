"""PyTorch peer: the benchmark's networks and train steps, eager or compiled.

Our own PyTorch version of what tf_softmoe trains (SPEC §1, §3, §4), with
the same shapes: uint8 [B, 84, 84, 4] frames / 255 → Nature CNN (SAME
padding, 11×11×64) or Impala ResNet (11×11×32) → flatten / SoftMoE /
tokenized_sum block → Q head (DQN: linear; Rainbow: dueling noisy C51 with
51 atoms). One train step = forward, loss, backward, Adam step, periodic
target sync, and the loss statistics copied back to the host (NumPy), as
`tf_softmoe.train.learner.Learner.train` returns them.

  DQN:     L = mean_b w_b · ½ (r + γ^n' max_a Q_target(s', a) − Q(s, a))²
  Rainbow: double-Q a* from the online net, target probabilities of the
           target net at a*, projected onto the support
           m_i = Σ_j clip(1 − |clip(r + γ^n' z_j) − z_i| / Δz, 0, 1) p_j,
           ℓ = −Σ_i m_i log p_online(s, a)_i, L = mean_b w_b ℓ_b.

Noisy layers draw factorised noise once per call, shared by the batch (as
tf_softmoe's NoisyDense). `--compile` wraps the loss computation (forward
and, through AOTAutograd, backward) in `torch.compile`; the Adam step is
PyTorch's fused CPU kernel in both modes.

Run as a worker of `benchmarks.train_step_bench` (protocol in
`benchmarks.peers.protocol`), inside the torch virtual environment.
"""

import argparse
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.peers import cases as cases_lib
from benchmarks.peers import protocol


def same_padding(size, kernel, stride):
    """TensorFlow/Flax SAME padding: (before, after, output size)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class SameConv2d(nn.Module):
    """Conv2d with SAME padding (asymmetric when TensorFlow's would be)."""

    def __init__(self, in_channels, out_channels, kernel, stride, in_size,
                 init="glorot"):
        super().__init__()
        before, after, self.out_size = same_padding(in_size, kernel, stride)
        symmetric = before == after
        self.pad = None if symmetric else (before, after, before, after)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride,
                              padding=before if symmetric else 0)
        if init == "glorot":
            nn.init.xavier_uniform_(self.conv.weight)
        else:  # LeCun normal (truncation ignored: speed only)
            fan_in = in_channels * kernel * kernel
            nn.init.normal_(self.conv.weight, std=1.0 / math.sqrt(fan_in))
        nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return self.conv(x)


class SameMaxPool(nn.Module):
    """3×3 stride-2 max-pool with SAME padding (pads with −inf)."""

    def __init__(self, in_size):
        super().__init__()
        before, after, self.out_size = same_padding(in_size, 3, 2)
        self.pad = (before, after, before, after)

    def forward(self, x):
        return F.max_pool2d(F.pad(x, self.pad, value=float("-inf")), 3, 2)


class NatureEncoder(nn.Module):
    """conv 32 8×8/4 → conv 64 4×4/2 → conv 64 3×3/1, ReLU, SAME: 11×11×64."""

    def __init__(self, size=84, channels=4):
        super().__init__()
        layers = []
        for filters, kernel, stride in [(32, 8, 4), (64, 4, 2), (64, 3, 1)]:
            conv = SameConv2d(channels, filters, kernel, stride, size)
            layers.append(conv)
            channels, size = filters, conv.out_size
        self.convs = nn.ModuleList(layers)
        self.out_shape = (size, size, channels)

    def forward(self, x):
        for conv in self.convs:
            x = F.relu(conv(x))
        return x


class ResidualBlock(nn.Module):
    def __init__(self, channels, size):
        super().__init__()
        self.conv_0 = SameConv2d(channels, channels, 3, 1, size, "lecun")
        self.conv_1 = SameConv2d(channels, channels, 3, 1, size, "lecun")

    def forward(self, x):
        return x + self.conv_1(F.relu(self.conv_0(F.relu(x))))


class ImpalaEncoder(nn.Module):
    """Stacks (16, 32, 32): conv 3×3 → max-pool 3×3/2 → 2 residual blocks;
    ReLU at the end. 84 → 42 → 21 → 11: 11×11×32."""

    def __init__(self, size=84, channels=4, stacks=(16, 32, 32), blocks=2):
        super().__init__()
        modules = []
        for filters in stacks:
            conv = SameConv2d(channels, filters, 3, 1, size)
            pool = SameMaxPool(size)
            size, channels = pool.out_size, filters
            modules.append(nn.ModuleList(
                [conv, pool] + [ResidualBlock(filters, size) for _ in range(blocks)]))
        self.stacks = nn.ModuleList(modules)
        self.out_shape = (size, size, channels)

    def forward(self, x):
        for stack in self.stacks:
            for module in stack:
                x = module(x)
        return F.relu(x)


def factorised_noise(size, device=None):
    eps = torch.randn(size, device=device)
    return eps.sign() * eps.abs().sqrt()


class NoisyLinear(nn.Module):
    """Factorised-Gaussian noisy linear layer; noise shared by the batch."""

    def __init__(self, in_features, out_features, sigma0):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(
            torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        sigma = sigma0 / math.sqrt(in_features)
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma))

    def forward(self, x):
        eps_in = factorised_noise(self.weight_mu.shape[1])
        eps_out = factorised_noise(self.weight_mu.shape[0])
        weight = self.weight_mu + self.weight_sigma * torch.outer(eps_out, eps_in)
        return F.linear(x, weight, self.bias_mu + self.bias_sigma * eps_out)


def linear(in_features, out_features, noisy):
    if noisy:
        return NoisyLinear(in_features, out_features, cases_lib.NOISY_SIGMA0)
    layer = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class SoftMoE(nn.Module):
    """SoftMoE over [B, m, d] tokens, n experts Dense(h) → ReLU → Dense(d),
    p = ceil(m/n) slots each; output flattened to [B, m·d]."""

    def __init__(self, num_tokens, dim, num_experts, hidden, noisy):
        super().__init__()
        n, d, h = num_experts, dim, hidden
        p = -(-num_tokens // n)
        self.noisy = noisy
        self.phi = nn.Parameter(torch.randn(d, n, p) / math.sqrt(n * d))

        def glorot(*shape):
            limit = math.sqrt(6.0 / (shape[-2] + shape[-1]))
            return nn.Parameter(torch.empty(*shape).uniform_(-limit, limit))

        if noisy:
            bound = 1.0 / math.sqrt(d)
            self.w_in = nn.Parameter(torch.empty(n, d, h).uniform_(-bound, bound))
            self.b_in = nn.Parameter(torch.empty(n, h).uniform_(-bound, bound))
            sigma = cases_lib.NOISY_SIGMA0 / math.sqrt(d)
            self.w_in_sigma = nn.Parameter(torch.full((n, d, h), sigma))
            self.b_in_sigma = nn.Parameter(torch.full((n, h), sigma))
        else:
            self.w_in = glorot(n, d, h)
            self.b_in = nn.Parameter(torch.zeros(n, h))
        self.w_out = glorot(n, h, d)
        self.b_out = nn.Parameter(torch.zeros(n, d))

    def forward(self, x):
        logits = torch.einsum("bmd,dnp->bmnp", x, self.phi)
        dispatch = logits.softmax(dim=1)
        combine = logits.flatten(2).softmax(dim=-1).view_as(logits)
        slots = torch.einsum("bmd,bmnp->bnpd", x, dispatch)
        w_in, b_in = self.w_in, self.b_in
        if self.noisy:
            n, d, h = w_in.shape
            eps_in, eps_out = factorised_noise((n, d)), factorised_noise((n, h))
            w_in = w_in + self.w_in_sigma * (eps_in[:, :, None] * eps_out[:, None, :])
            b_in = b_in + self.b_in_sigma * eps_out
        hidden = F.relu(torch.einsum("bnpd,ndh->bnph", slots, w_in)
                        + b_in[None, :, None, :])
        out = (torch.einsum("bnph,nho->bnpo", hidden, self.w_out)
               + self.b_out[None, :, None, :])
        return torch.einsum("bnpd,bmnp->bmd", out, combine).flatten(1)


class QNetwork(nn.Module):
    """obs uint8 [B, 84, 84, 4] → Q [B, A] (DQN) or logits [B, A, atoms]."""

    def __init__(self, case):
        super().__init__()
        rainbow = case["agent"] == "rainbow"
        noisy = rainbow
        self.encoder = (NatureEncoder() if case["encoder"] == "nature"
                        else ImpalaEncoder())
        h, w, c = self.encoder.out_shape
        kind, experts, scale = cases_lib.BLOCK_SHAPES[case["block"]]
        width = 512 * scale
        self.kind = kind
        if kind == "flatten":
            self.block = linear(h * w * c, width, noisy)
            features = width
        elif kind == "tokenized_sum":
            self.block = linear(c, width, noisy)
            features = width
        else:
            self.block = SoftMoE(h * w, c, experts, width, noisy)
            features = h * w * c
        self.num_actions = case["num_actions"]
        self.atoms = cases_lib.NUM_ATOMS if rainbow else 1
        self.dueling = rainbow
        self.advantage = linear(features, self.num_actions * self.atoms, noisy)
        self.value = linear(features, self.atoms, noisy) if rainbow else None

    def forward(self, obs):
        # NHWC uint8 → an NCHW view (channels-last strides: no copy).
        x = obs.permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        fmap = self.encoder(x)
        if self.kind == "flatten":
            features = F.relu(self.block(fmap.flatten(1)))
        else:
            tokens = fmap.permute(0, 2, 3, 1).flatten(1, 2)  # [B, h·w, C]
            if self.kind == "tokenized_sum":
                features = F.relu(self.block(tokens)).sum(dim=1)
            else:
                features = self.block(tokens)
        out = self.advantage(features).view(-1, self.num_actions, self.atoms)
        if self.dueling:
            value = self.value(features).view(-1, 1, self.atoms)
            out = value + out - out.mean(dim=1, keepdim=True)
        return out if self.atoms > 1 else out[..., 0]


def dqn_loss(online, target, state, action, reward, next_state, discount, weights):
    q = online(state)
    chosen = q.gather(1, action[:, None].long())[:, 0]
    with torch.no_grad():
        best_next = target(next_state).max(dim=1).values
        y = reward + discount * best_next
    per_sample = 0.5 * (y - chosen) ** 2
    td_error = y - chosen.detach()
    return (weights * per_sample).mean(), per_sample.detach(), td_error


def rainbow_loss(online, target, state, action, reward, next_state, discount,
                 weights):
    support = torch.linspace(cases_lib.V_MIN, cases_lib.V_MAX, cases_lib.NUM_ATOMS)
    delta = (cases_lib.V_MAX - cases_lib.V_MIN) / (cases_lib.NUM_ATOMS - 1)
    rows = torch.arange(state.shape[0])
    logits = online(state)
    chosen = logits[rows, action.long()]
    with torch.no_grad():
        target_probs = target(next_state).softmax(dim=-1)
        online_next = online(next_state).softmax(dim=-1)
        best = (online_next * support).sum(dim=-1).argmax(dim=-1)
        next_probs = target_probs[rows, best]
        shifted = (reward[:, None] + discount[:, None] * support[None, :]).clamp(
            cases_lib.V_MIN, cases_lib.V_MAX)
        weight = (1.0 - (shifted[:, None, :] - support[None, :, None]).abs()
                  / delta).clamp(0.0, 1.0)
        projected = (weight * next_probs[:, None, :]).sum(dim=-1)
    per_sample = -(projected * chosen.log_softmax(dim=-1)).sum(dim=-1)
    chosen_q = (chosen.detach().softmax(dim=-1) * support).sum(dim=-1)
    td_error = (projected * support).sum(dim=-1) - chosen_q
    return (weights * per_sample).mean(), per_sample.detach(), td_error


def build(case, compiled):
    torch.manual_seed(0)
    online = QNetwork(case)
    target = QNetwork(case)
    target.load_state_dict(online.state_dict())
    for p in target.parameters():
        p.requires_grad_(False)
    try:
        optimizer = torch.optim.Adam(online.parameters(), lr=cases_lib.LEARNING_RATE,
                                     eps=cases_lib.ADAM_EPSILON, fused=True)
    except (RuntimeError, TypeError, ValueError):
        optimizer = torch.optim.Adam(online.parameters(), lr=cases_lib.LEARNING_RATE,
                                     eps=cases_lib.ADAM_EPSILON, foreach=True)
    loss_fn = rainbow_loss if case["agent"] == "rainbow" else dqn_loss
    if compiled:
        loss_fn = torch.compile(loss_fn, dynamic=False)
    batch = cases_lib.synthetic_batch(case, 0, np)
    keys = ("state", "action", "reward", "next_state", "discount",
            "importance_weights")
    updates = [0]

    def step():
        args = [torch.from_numpy(batch[k]) for k in keys]
        loss, per_sample, td_error = loss_fn(online, target, *args)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        updates[0] += 1
        if updates[0] % cases_lib.TARGET_UPDATE_UPDATES == 0:
            target.load_state_dict(online.state_dict())
        return {"loss": loss.item(), "per_sample_loss": per_sample.numpy(),
                "td_error_mean": td_error.mean().item(),
                "td_error_var": td_error.var(unbiased=False).item()}

    params = sum(p.numel() for p in online.parameters())
    return step, params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    threads = protocol.requested_threads()
    if threads:
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
    info = {"peer": "torch_compile" if args.compile else "torch_eager",
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "cpu_count": os.cpu_count(),
            "mkldnn": torch.backends.mkldnn.is_available()}
    protocol.serve(lambda case: build(case, args.compile), info)


if __name__ == "__main__":
    main()
