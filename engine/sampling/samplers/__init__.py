"""Every sampler of ComfyUI 0.3.64's KSampler, by name, in its order.

Each is ``sample_x(model, x, sigmas, extra_args=None, callback=None, disable=None, **options)`` with the
denoiser protocol documented in ``common``. ``x`` is the already noise-scaled start (see ``ksampler.sample``
for the full KSampler pipeline).
"""
from __future__ import annotations

from typing import Callable

import torch

from .dpm_solver import sample_dpm_adaptive, sample_dpm_fast
from .dpmpp import (sample_dpmpp_2m, sample_dpmpp_2m_cfg_pp, sample_dpmpp_2m_sde, sample_dpmpp_2m_sde_gpu,
                    sample_dpmpp_2m_sde_heun, sample_dpmpp_2m_sde_heun_gpu, sample_dpmpp_2s_ancestral,
                    sample_dpmpp_2s_ancestral_cfg_pp, sample_dpmpp_3m_sde, sample_dpmpp_3m_sde_gpu,
                    sample_dpmpp_sde, sample_dpmpp_sde_gpu)
from .euler import (sample_dpm_2, sample_dpm_2_ancestral, sample_euler, sample_euler_ancestral,
                    sample_euler_ancestral_cfg_pp, sample_euler_cfg_pp, sample_euler_pp, sample_heun, sample_heunpp2)
from .multistep import (sample_deis, sample_gradient_estimation, sample_gradient_estimation_cfg_pp, sample_ipndm,
                        sample_ipndm_v, sample_lms, sample_res_multistep, sample_res_multistep_ancestral,
                        sample_res_multistep_ancestral_cfg_pp, sample_res_multistep_cfg_pp)
from .sa_solver import sample_sa_solver, sample_sa_solver_pece
from .stochastic import (sample_ddpm, sample_er_sde, sample_lcm, sample_lcm_upscale, sample_seeds_2,
                         sample_seeds_3)
from .unipc import sample_uni_pc, sample_uni_pc_bh2

Sampler = Callable[..., torch.Tensor]

SAMPLERS: dict[str, Sampler] = {
    "euler": sample_euler,
    "euler_cfg_pp": sample_euler_cfg_pp,
    "euler_ancestral": sample_euler_ancestral,
    "euler_ancestral_cfg_pp": sample_euler_ancestral_cfg_pp,
    "heun": sample_heun,
    "heunpp2": sample_heunpp2,
    "dpm_2": sample_dpm_2,
    "dpm_2_ancestral": sample_dpm_2_ancestral,
    "lms": sample_lms,
    "dpm_fast": sample_dpm_fast,
    "dpm_adaptive": sample_dpm_adaptive,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
    "dpmpp_2s_ancestral_cfg_pp": sample_dpmpp_2s_ancestral_cfg_pp,
    "dpmpp_sde": sample_dpmpp_sde,
    "dpmpp_sde_gpu": sample_dpmpp_sde_gpu,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_cfg_pp": sample_dpmpp_2m_cfg_pp,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_gpu": sample_dpmpp_2m_sde_gpu,
    "dpmpp_2m_sde_heun": sample_dpmpp_2m_sde_heun,
    "dpmpp_2m_sde_heun_gpu": sample_dpmpp_2m_sde_heun_gpu,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "dpmpp_3m_sde_gpu": sample_dpmpp_3m_sde_gpu,
    "ddpm": sample_ddpm,
    "lcm": sample_lcm,
    "ipndm": sample_ipndm,
    "ipndm_v": sample_ipndm_v,
    "deis": sample_deis,
    "res_multistep": sample_res_multistep,
    "res_multistep_cfg_pp": sample_res_multistep_cfg_pp,
    "res_multistep_ancestral": sample_res_multistep_ancestral,
    "res_multistep_ancestral_cfg_pp": sample_res_multistep_ancestral_cfg_pp,
    "gradient_estimation": sample_gradient_estimation,
    "gradient_estimation_cfg_pp": sample_gradient_estimation_cfg_pp,
    "er_sde": sample_er_sde,
    "seeds_2": sample_seeds_2,
    "seeds_3": sample_seeds_3,
    "sa_solver": sample_sa_solver,
    "sa_solver_pece": sample_sa_solver_pece,
    # DDIM is Euler on the probability-flow ODE; it differs only in how inpainting noise is drawn
    # (see ksampler.sample).
    "ddim": sample_euler,
    "uni_pc": sample_uni_pc,
    "uni_pc_bh2": sample_uni_pc_bh2,
}
SAMPLER_NAMES: list[str] = list(SAMPLERS)
# Samplers that only sampler nodes pick (SamplerLCMUpscale, SamplerEulerCFG++ "alternative"): not KSampler choices.
NODE_SAMPLERS: dict[str, Sampler] = {
    "lcm_upscale": sample_lcm_upscale,
    "euler_pp": sample_euler_pp,
}
