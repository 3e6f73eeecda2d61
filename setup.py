"""Install the Tree-OPO math reasoning library (packages ``envs``, ``agents``, ``sae``)."""

from pathlib import Path

from setuptools import find_packages, setup

BASE_REQUIREMENTS = [
    "numpy>=1.24",
    "scipy>=1.10",
    "sympy>=1.12",
    "gymnasium>=1.0",
    "tqdm>=4.60",
    # default_problems() and so gymnasium.make("MathReasoning-v0") with no problems.
    "reasoning-gym>=0.1.19",
]

# The language-model side. torch is not pinned here: the README installs the CPU build
# (torch==2.13.0) first, and an unpinned requirement would otherwise pull a CUDA build.
LM_REQUIREMENTS = [
    "torch>=2.2",
    "transformers>=4.46",
    "safetensors>=0.4",
    "gguf>=0.10",
    "accelerate>=0.30",
    "tensorboard>=2.14",
]

EXTRAS = {
    "lm": LM_REQUIREMENTS,
    "lora": ["peft>=0.11"],
    "bench": ["math-verify>=0.7", "matplotlib>=3.7"],
    "test": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.6"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="tree-opo",
    version="0.1.0",
    description=(
        "Train small language models on multi-step math with MCTS teacher prefix trees, "
        "GRPO and Staged Advantage Estimation."
    ),
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["envs", "envs.*", "agents", "agents.*", "sae", "sae.*"]),
    install_requires=BASE_REQUIREMENTS,
    extras_require=EXTRAS,
)
