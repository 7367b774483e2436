"""Attack registry. ``create_attack(name, **options)``; every attack is documented in its class."""
from .base import ATTACKS, Attack, AttackOutput, attack_fields, create_attack, predict, register_attack
from . import pgd_attacks, autoattack, gradient, foolbox_attacks, transfer, apgd, fast, user  # noqa: F401  (register)

__all__ = ["ATTACKS", "Attack", "AttackOutput", "create_attack", "register_attack", "attack_fields", "predict"]
