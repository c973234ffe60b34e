"""What the routes share: the container and one chat model per model group."""

from __future__ import annotations

import time

from groundwork.container import Container
from groundwork.models.base import ChatModel


class ApiState:
    """The app's view of a :class:`Container`; held in ``app.state.groundwork``."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.started_at = int(time.time())
        self._chat_models: dict[str, ChatModel] = {}

    def chat_model(self, group: str) -> ChatModel:
        """The chat model of a model group, built once (raises ``NotFoundError`` for an unknown group)."""
        model = self._chat_models.get(group)
        if model is None:
            model = self._chat_models[group] = self.container.chat_model_for(group)
        return model

    async def aclose(self) -> None:
        """Close the chat models this app built."""
        models, self._chat_models = list(self._chat_models.values()), {}
        for model in models:
            await model.aclose()
