"""`python -m services.mirror`"""

from mailcore.config import MirrorSettings
from mailcore.service import run_service
from services.mirror.app import serve

if __name__ == "__main__":
    run_service(MirrorSettings, serve)
