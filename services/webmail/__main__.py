"""`python -m services.webmail`"""

from mailcore.config import WebmailSettings
from mailcore.service import run_service
from services.webmail.app import serve

if __name__ == "__main__":
    run_service(WebmailSettings, serve)
