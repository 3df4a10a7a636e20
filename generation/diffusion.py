"""Gaussian diffusion around diffusers' ``DDPMScheduler``: the improved-DDPM hybrid loss and sampling.

The schedule is U-DiT's (ADM's): 1000 steps, linear betas 1e-4 → 0.02, ε-prediction with a
learned-range variance. Training minimises ``MSE(ε) + L_vb`` where ``L_vb`` (in bits per
dimension) trains only the variance: the KL between the true posterior q(x_{t-1} | x_t, x_0) and
the model's p(x_{t-1} | x_t) for t > 0 and the discretized Gaussian decoder NLL at t = 0, both
with the predicted ε detached (Nichol & Dhariwal 2021, Sec. 3.1).
"""
from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from tqdm.auto import tqdm


def make_scheduler(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> DDPMScheduler:
    """U-DiT's DDPM schedule (betas scaled by 1000 / T as in ADM) with a learned-range variance."""
    scale = 1000.0 / num_train_timesteps
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps, beta_schedule="linear", beta_start=scale * beta_start,
        beta_end=scale * beta_end, variance_type="learned_range", prediction_type="epsilon", clip_sample=False,
    )


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all but the batch dimension, ``(B, ...) → (B,)``."""
    return x.flatten(1).mean(dim=1)


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """Element-wise KL( N(mean1, e^logvar1) || N(mean2, e^logvar2) ) in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """Element-wise log-probability (nats) of data in [-1, 1] on a 256-level grid under N(means, e^(2·log_scales)).

    Each value owns the bin ``x ± 1/255``; the end bins extend to ±∞.
    """
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = torch.special.ndtr(inv_std * (centered + 1.0 / 255.0))
    cdf_min = torch.special.ndtr(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_bin = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_bin))


class HybridLoss(nn.Module):
    """Improved-DDPM hybrid objective for an ε / learned-range-variance model.

    ``forward(model_output (B, 2C, ...), x_start, x_t, t (B,), noise) → {'loss_mse': (B,), 'loss_vb': (B,)}``.
    """

    def __init__(self, scheduler: DDPMScheduler):
        super().__init__()
        betas = scheduler.betas.double()
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        tables = {
            "log_betas": torch.log(betas),
            "sqrt_recip_alphas_cumprod": torch.sqrt(1.0 / alphas_cumprod),
            "sqrt_recipm1_alphas_cumprod": torch.sqrt(1.0 / alphas_cumprod - 1.0),
            "posterior_mean_coef1": betas * torch.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * torch.sqrt(1.0 - betas) / (1.0 - alphas_cumprod),
            # the t = 0 posterior variance is 0: use the t = 1 value for its log, as ADM does
            "posterior_log_variance_clipped": torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])),
        }
        for name, table in tables.items():
            self.register_buffer(name, table.float(), persistent=False)

    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return table[t].reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)

    def q_posterior(self, x_start: torch.Tensor, x_t: torch.Tensor,
                    t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = self._at(self.posterior_mean_coef1, t, x_t) * x_start + self._at(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, self._at(self.posterior_log_variance_clipped, t, x_t).expand_as(x_t)

    def p_mean_log_variance(self, model_output: torch.Tensor, x_t: torch.Tensor,
                            t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of p(x_{t-1} | x_t) from ε and the variance interpolation v ∈ [-1, 1]."""
        eps, v = model_output.split(x_t.shape[1], dim=1)
        min_log = self._at(self.posterior_log_variance_clipped, t, x_t)
        max_log = self._at(self.log_betas, t, x_t)
        frac = (v + 1) / 2
        log_variance = frac * max_log + (1 - frac) * min_log
        pred_x_start = self._at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t \
            - self._at(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps
        mean, _ = self.q_posterior(pred_x_start, x_t, t)
        return mean, log_variance

    def vb_terms_bits(self, model_output: torch.Tensor, x_start: torch.Tensor, x_t: torch.Tensor,
                      t: torch.Tensor) -> torch.Tensor:
        """``(B,)`` variational-bound term in bits per dimension (decoder NLL where t == 0)."""
        true_mean, true_log_variance = self.q_posterior(x_start, x_t, t)
        mean, log_variance = self.p_mean_log_variance(model_output, x_t, t)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, mean, log_variance)) / math.log(2.0)
        nll = -mean_flat(discretized_gaussian_log_likelihood(x_start, mean, 0.5 * log_variance)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def forward(self, model_output: torch.Tensor, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                noise: torch.Tensor) -> dict[str, torch.Tensor]:
        channels = x_t.shape[1]
        if model_output.shape != (x_t.shape[0], 2 * channels, *x_t.shape[2:]):
            raise ValueError(f"expected model output (B, 2·{channels}, ...) for ε and variance, "
                             f"got {tuple(model_output.shape)}")
        eps, v = model_output.split(channels, dim=1)
        frozen = torch.cat([eps.detach(), v], dim=1)
        return {"loss_mse": mean_flat((noise - eps) ** 2), "loss_vb": self.vb_terms_bits(frozen, x_start, x_t, t)}


@torch.no_grad()
def sample(
    model: nn.Module,
    labels: torch.Tensor,
    shape: tuple[int, int, int],
    scheduler: DDPMScheduler,
    num_steps: int = 250,
    cfg_scale: float = 1.5,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Ancestral DDPM sampling with the learned variance, ``labels (B,) → samples (B, *shape)``.

    ``num_steps`` respaces the 1000-step schedule (diffusers' ``set_timesteps``). With
    ``cfg_scale > 1`` classifier-free guidance mixes ε of the label and of the null class
    ``model.num_classes`` on all channels; the variance comes from the conditional pass.
    """
    model_device = next(model.parameters()).device
    labels = labels.to(model_device)
    scheduler = DDPMScheduler.from_config(scheduler.config)
    scheduler.set_timesteps(num_steps, device=model_device)
    x = randn_tensor((labels.shape[0], *shape), generator=generator, device=model_device,
                     dtype=next(model.parameters()).dtype)
    guided = cfg_scale > 1.0
    if guided:
        labels = torch.cat([labels, torch.full_like(labels, model.num_classes)])
    for t in tqdm(scheduler.timesteps, desc="sampling", disable=not progress, leave=False):
        inputs = torch.cat([x, x]) if guided else x
        output = model(inputs, t.expand(inputs.shape[0]), labels)
        eps, variance = output.split(shape[0], dim=1)
        if guided:
            cond, uncond = eps.chunk(2)
            eps, variance = uncond + cfg_scale * (cond - uncond), variance.chunk(2)[0]
        x = scheduler.step(torch.cat([eps, variance], dim=1), t, x, generator=generator).prev_sample
    return x
