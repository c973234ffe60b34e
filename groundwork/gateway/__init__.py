"""The model gateway: a router over deployments with balancing, retries, cooldowns and fallbacks."""

from groundwork.gateway.deployment import DeploymentState
from groundwork.gateway.policy import Health, PeakEwma, RetryPolicy
from groundwork.gateway.router import RoutedModel, Router

__all__ = ["DeploymentState", "Health", "PeakEwma", "RetryPolicy", "RoutedModel", "Router"]
