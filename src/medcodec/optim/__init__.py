"""Small derivative-free optimisers for offline fitting (never used while coding an image)."""

from medcodec.optim.gwo import OptimResult, differential_evolution, grey_wolf, particle_swarm

__all__ = ["OptimResult", "differential_evolution", "grey_wolf", "particle_swarm"]
