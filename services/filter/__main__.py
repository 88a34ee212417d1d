"""`python -m services.filter`"""

from mailcore.config import FilterSettings
from mailcore.service import run_service
from services.filter.app import serve

if __name__ == "__main__":
    run_service(FilterSettings, serve)
