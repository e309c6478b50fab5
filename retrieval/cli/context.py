"""What every command needs: the settings, the database (migrated on first use) and the device."""

from __future__ import annotations

import argparse
from functools import cached_property
from typing import TYPE_CHECKING, Any

from unibind.schema.settings import DEFAULT_ENCODER, Settings

if TYPE_CHECKING:
    from unibind.indexer.runtime.device import Device
    from unibind.schema import Database, Space

# namespace attribute -> Settings field, for the flags that are settings
SETTING_FLAGS = {"db": "database_url", "home": "home", "vectors": "vectors", "device": "device", "fp16": "fp16", "encoder": "encoder",
                 "host": "host", "port": "port", "max_batch": "max_batch", "max_k": "max_k",
                 "max_labels": "max_labels", "max_upload_mb": "max_upload_mb", "max_image_pixels": "max_image_pixels",
                 "max_queued_uploads": "max_queued_uploads", "base_url": "llm_base_url"}


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings with the command line's flags on top of the environment and the defaults."""
    return Settings.resolve(**{name: getattr(args, attr, None) for attr, name in SETTING_FLAGS.items()})


class Context:
    """Built once per command from the parsed flags; the database and the device are opened on first use."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.settings = settings_from_args(args)
        self.home = self.settings.home
        self.encoder = self.settings.encoder  # --encoder, else $UNIBIND_ENCODER, else None (the only space)

    @cached_property
    def db(self) -> Database:
        from unibind.schema import Database

        return Database(self.settings.database_url, vectors=self.settings.vectors)

    @cached_property
    def device(self) -> Device:
        """Chosen on first use, so commands that only read the store never import torch."""
        from unibind.indexer.runtime.device import select_device

        return select_device(self.settings.device, faiss_fp16=self.settings.fp16)

    def space(self) -> Space:
        """The space the command works on: the encoder setting's, else the only one."""
        from unibind.indexer.store.contents import find_space

        with self.db.session() as session:
            return find_space(session, self.encoder)

    def default_encoder(self) -> str:
        """The encoder setting, else the only existing space's encoder, else ``DEFAULT_ENCODER``."""
        if self.encoder:
            return self.encoder
        from sqlalchemy import select

        from unibind.schema import Space

        with self.db.session() as session:
            encoders: list[Any] = list(session.scalars(select(Space.encoder)))
        return str(encoders[0]) if len(encoders) == 1 else DEFAULT_ENCODER
