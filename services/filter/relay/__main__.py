"""`python -m services.filter.relay`"""

from mailcore.config import RelaySettings
from mailcore.service import run_service
from services.filter.relay.app import serve

if __name__ == "__main__":
    run_service(RelaySettings, serve)
