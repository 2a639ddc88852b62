"""The discrete noise schedule of SD-style models and the maths of their prediction types.

A diffusion model sees ``x = x0 + sigma * eps`` (the k-diffusion "VE" view). ``ModelSampling`` converts between
sigmas and the model's 1000 training timesteps, scales the network input, turns the network output into the
denoised estimate, and scales the starting noise, matching ComfyUI's ``ModelSamplingDiscrete`` with ``EPS`` /
``V_PREDICTION`` numerically (same dtypes, same order of operations), and the other prediction types and
continuous schedules that ComfyUI's ModelSampling nodes put on a model.
"""
from __future__ import annotations

import math

import torch

# eps: the noise; v_prediction: the velocity; edm: Karras et al.'s F (v with the other sign); x0 / img_to_img: the
# clean latent itself (img_to_img also takes the noisy latent unscaled); lcm: latent-consistency's boundary blend.
PREDICTIONS = ("eps", "v_prediction", "edm", "x0", "img_to_img", "lcm")


def linear_betas(timesteps: int = 1000, linear_start: float = 0.00085, linear_end: float = 0.012) -> torch.Tensor:
    """SD's "linear" beta schedule: linear in sqrt(beta), computed in float64."""
    return torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2


def sigmas_from_betas(betas: torch.Tensor) -> torch.Tensor:
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5


# Zero-terminal-SNR would make the last alpha_bar exactly 0 (sigma infinite); ComfyUI pins it to this value.
ZSNR_LAST_ALPHA_BAR = 4.8973451890853435e-08


def rescale_zero_terminal_snr(sigmas: torch.Tensor) -> torch.Tensor:
    """Shift and rescale sqrt(alpha_bar) so the last timestep has (almost) zero SNR (Lin et al. 2023)."""
    sqrt_ab = (1 / (sigmas * sigmas + 1)).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * (first / (first - last))
    alpha_bar = sqrt_ab ** 2
    alpha_bar[-1] = ZSNR_LAST_ALPHA_BAR
    return ((1 - alpha_bar) / alpha_bar) ** 0.5


def _per_sample(sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    """A scalar sigma stays a scalar; a per-sample sigma becomes (B, 1, ..., 1) to broadcast over x."""
    if sigma.nelement() == 1:
        return sigma.view(())
    return sigma.view(sigma.shape[:1] + (1,) * (ndim - 1))


class _SigmaTable:
    """The sigma range of an ascending ``sigmas`` table (timestep 0 first)."""

    sigmas: torch.Tensor

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]


class ModelSampling(_SigmaTable):
    """Sigma table and prediction-type maths of a discrete-time (1000 step) diffusion model.

    ``sigmas`` is ascending (timestep 0 first). Float32 copies of sigma and log-sigma are kept, the log taken
    before the cast, as ComfyUI does. The table lives on the CPU; inputs may be on any device.
    """

    def __init__(self, sigmas: torch.Tensor, prediction: str = "eps", sigma_data: float = 1.0):
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {prediction!r}; expected one of {PREDICTIONS}")
        self.prediction = prediction
        self.sigma_data = sigma_data
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()

    # -- sigma <-> timestep ---------------------------------------------------------------------------------
    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Index of the table entry nearest in log-sigma (int64, same shape and device as ``sigma``)."""
        dists = sigma.log().to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sigma at a (possibly fractional) timestep, interpolating linearly in log-sigma."""
        t = timestep.float().to(self.log_sigmas.device).clamp(0, len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        return log_sigma.exp().to(timestep.device)

    def percent_to_sigma(self, percent: float) -> float:
        """Sigma reached after ``percent`` of the denoising (0 -> "infinite", 1 -> 0)."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return self.sigma(torch.tensor((1.0 - percent) * 999.0)).item()

    # -- half-log-SNR (lambda = log(alpha / sigma_vp)); in the VE view this is -log(sigma) -----------------
    def half_log_snr(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma.log().neg()

    def sigma_from_half_log_snr(self, half_log_snr: torch.Tensor) -> torch.Tensor:
        return half_log_snr.neg().exp()

    # -- prediction-type maths ------------------------------------------------------------------------------
    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Scale the noisy latent to unit variance before it enters the network."""
        if self.prediction == "img_to_img":
            return x
        sigma = _per_sample(sigma, x.ndim)
        return x / (sigma ** 2 + self.sigma_data ** 2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The x0 estimate from the raw network output (``x`` is the unscaled network input)."""
        if self.prediction in ("x0", "img_to_img"):
            return model_output
        if self.prediction == "lcm":
            return self._lcm_denoised(sigma, model_output, x)
        sigma = _per_sample(sigma, model_output.ndim)
        if self.prediction == "eps":
            return x - model_output * sigma
        sd = self.sigma_data
        skip = x * sd ** 2 / (sigma ** 2 + sd ** 2)
        out = model_output * sigma * sd / (sigma ** 2 + sd ** 2) ** 0.5
        return skip + out if self.prediction == "edm" else skip - out

    def _lcm_denoised(self, sigma, model_output, x):
        """The eps estimate of x0, blended with the input by LCM's boundary conditions (sigma_data 0.5 and a
        timestep scaled by 10)."""
        shape = sigma.shape[:1] + (1,) * (model_output.ndim - 1)
        scaled_timestep = self.timestep(sigma).view(shape) * 10.0
        x0 = x - model_output * sigma.view(shape)
        c_skip = 0.5 ** 2 / (scaled_timestep ** 2 + 0.5 ** 2)
        c_out = scaled_timestep / (scaled_timestep ** 2 + 0.5 ** 2) ** 0.5
        return c_out * x0 + c_skip * x

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent_image: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        """The sampler's starting point: ``latent + sigma * noise``.

        At full denoise the noise is scaled by sqrt(1 + sigma^2) instead, which is the variance of a pure-noise
        latent under the VP model the network was trained on.
        """
        sigma = _per_sample(sigma, noise.ndim)
        scale = torch.sqrt(1.0 + sigma ** 2.0) if max_denoise else sigma
        return noise * scale + latent_image

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return latent


def discrete_model_sampling(prediction: str = "eps", *, timesteps: int = 1000, linear_start: float = 0.00085,
                            linear_end: float = 0.012, zsnr: bool = False) -> ModelSampling:
    """The SD1.x / SD2.x / SDXL schedule (ComfyUI's defaults); ``zsnr`` rescales to zero terminal SNR."""
    sigmas = sigmas_from_betas(linear_betas(timesteps, linear_start, linear_end))
    if zsnr:
        sigmas = rescale_zero_terminal_snr(sigmas)
    sampling = ModelSampling(sigmas, prediction)
    sampling.zsnr = zsnr  # saved checkpoints say so (the "ztsnr" key), as ComfyUI's
    return sampling


class DistilledModelSampling(ModelSampling):
    """A consistency-distilled model's schedule (ComfyUI's ``ModelSamplingDiscreteDistilled``, for LCM): every
    20th of the 1000 discrete sigmas, the timestep of entry i being 20 * i + 19."""

    original_timesteps = 50

    def __init__(self, sigmas: torch.Tensor, prediction: str = "lcm"):
        full = sigmas.float()
        self.skip_steps = len(full) // self.original_timesteps
        kept = torch.stack([full[len(full) - 1 - i * self.skip_steps] for i in range(self.original_timesteps)])
        super().__init__(kept.flip(0), prediction)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        index = super().timestep(sigma)
        return index * self.skip_steps + (self.skip_steps - 1)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        return super().sigma((timestep.float() - (self.skip_steps - 1)) / self.skip_steps)


class ContinuousModelSampling(ModelSampling):
    """A continuous-time schedule (ComfyUI's ``ModelSamplingContinuousEDM``): 1000 sigmas evenly spaced in log
    between sigma_min and sigma_max, the network's timestep 0.25 * log(sigma) (EDM's c_noise); ``v_timesteps``
    uses 2 / pi * atan(sigma) instead (``ModelSamplingContinuousV``)."""

    def __init__(self, sigma_min: float, sigma_max: float, prediction: str = "eps", sigma_data: float = 1.0,
                 v_timesteps: bool = False):
        super().__init__(torch.linspace(math.log(sigma_min), math.log(sigma_max), 1000).exp(), prediction, sigma_data)
        self.v_timesteps = v_timesteps

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma.atan() / math.pi * 2 if self.v_timesteps else 0.25 * sigma.log()

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        return (timestep * math.pi / 2).tan() if self.v_timesteps else (timestep / 0.25).exp()

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        log_min = math.log(self.sigma_min)
        return math.exp((math.log(self.sigma_max) - log_min) * (1.0 - percent) + log_min)


def time_shift(shift: float, t):
    """The flow-matching timestep shift sigma = shift * t / (1 + (shift - 1) * t) (identity for shift 1)."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


class FlowModelSampling(_SigmaTable):
    """Rectified-flow models (ComfyUI's ``ModelSamplingDiscreteFlow`` with ``CONST``): ``x = (1 - sigma) * x0 +
    sigma * noise`` with sigma in [0, 1], a velocity-like output ``v`` giving ``x0 = x - sigma * v``.

    The table holds the shifted sigmas of 1000 evenly spaced times; the network's timestep is
    ``sigma * multiplier``. Same interface as ``ModelSampling``, so schedules and samplers take either.
    """

    prediction = "flow"

    def __init__(self, shift: float = 1.0, multiplier: float = 1000.0, timesteps: int = 1000):
        self.shift = shift
        self.multiplier = multiplier
        self.sigmas = self.sigma((torch.arange(1, timesteps + 1, 1) / timesteps) * multiplier).float()

    def shifted(self, t):
        """Sigma at time ``t`` in [0, 1]."""
        return time_shift(self.shift, t)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma * self.multiplier

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        return self.shifted(timestep / self.multiplier)

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return self.shifted(1.0 - percent)

    # In flow terms alpha = 1 - sigma, so lambda = log((1 - sigma) / sigma) = -logit(sigma).
    def half_log_snr(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma.logit().neg()

    def sigma_from_half_log_snr(self, half_log_snr: torch.Tensor) -> torch.Tensor:
        return half_log_snr.neg().sigmoid()

    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x

    def calculate_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x - model_output * _per_sample(sigma, model_output.ndim)

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent_image: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        sigma = _per_sample(sigma, noise.ndim)
        return sigma * noise + (1.0 - sigma) * latent_image

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return latent / (1.0 - _per_sample(sigma, latent.ndim))


class FluxModelSampling(FlowModelSampling):
    """FLUX.1 dev's rectified flow (ComfyUI's ``ModelSamplingFlux``): the time shift is exponential,
    ``sigma = e^mu / (e^mu + (1 / t - 1))`` with ``mu = shift``, over a 10000-entry table; timestep = sigma."""

    def __init__(self, shift: float = 1.15):
        super().__init__(shift=shift, multiplier=1.0, timesteps=10000)

    def shifted(self, t):
        return math.exp(self.shift) / (math.exp(self.shift) + (1 / t - 1))


def flux_shift_for_size(width: int, height: int, max_shift: float = 1.15, base_shift: float = 0.5) -> float:
    """ModelSamplingFlux's mu: linear in the image's token count (one per 16x16 pixels), base_shift at 256 tokens
    and max_shift at 4096."""
    slope = (max_shift - base_shift) / (4096 - 256)
    return base_shift + slope * (width * height / 256 - 256)
