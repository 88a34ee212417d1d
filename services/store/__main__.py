"""`python -m services.store`"""

from mailcore.config import StoreSettings
from mailcore.service import run_service
from services.store.app import serve

if __name__ == "__main__":
    run_service(StoreSettings, serve)
