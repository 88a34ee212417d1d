"""The relay fixture (a relay, a store and remote MXs) for the outbound queue commands."""

from tests.services.filter.relay.conftest import relay_env

__all__ = ["relay_env"]
