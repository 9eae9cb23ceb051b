"""Generation methods: one module each, found through `generator.methods.registry.METHODS`."""

from generator.methods.base import Ask, Inputs, Method, Role, RoundSettings
from generator.methods.registry import METHODS, STAGE_ROLES, all_roles, get_method

__all__ = ["METHODS", "STAGE_ROLES", "Ask", "Inputs", "Method", "Role", "RoundSettings", "all_roles", "get_method"]
