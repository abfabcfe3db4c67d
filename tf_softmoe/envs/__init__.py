"""Environments: Atari 2600 (ALE v5, Dopamine protocol) and the tiny Catch."""

from tf_softmoe.envs.atari import AtariConfig
from tf_softmoe.envs.atari import AtariPyEnvironment
from tf_softmoe.envs.atari import make_atari_env
from tf_softmoe.envs.atari import resolve_game_name
from tf_softmoe.envs.atari import valid_game_names
from tf_softmoe.envs.catch import CatchEnv

__all__ = [
    "AtariConfig",
    "AtariPyEnvironment",
    "CatchEnv",
    "make_atari_env",
    "resolve_game_name",
    "valid_game_names",
]
