"""README's pictures of the console, copied from the browser tests' latest screenshots.

    python -m tests.browser.pictures

Run the browser tests first (``python -m pytest tests/browser``): each picture below is
one test's screenshot, so a picture in README is always the screen as a test saw it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.browser.conftest import SCREENSHOTS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"

#: README's picture -> the screenshot it is copied from
PICTURES = {
    "payments.png": (
        "test_an_operator_signs_in_and_sees_the_associated_list_newest_first-2-payments.png"
    ),
    "payments-phone.png": (
        "test_a_phone_width_reads_without_sideways_scrolling_and_the_keyboard_works-1-phone.png"
    ),
    "customer.png": "test_readme_s_first_payment_done_on_the_screen-4-balance.png",
    "dashboard.png": "test_the_seed_s_days_read_as_the_api_gives_them-1-seed-days.png",
    "transactions.png": (
        "test_every_kind_is_listed_newest_first_with_failed_and_cancelled_attempts_marked"
        "-1-transactions.png"
    ),
    "requests.png": (
        "test_asked_with_the_keyboard_alone_it_turns_paid_on_the_screen_and_credits_once-3-paid.png"
    ),
}


def main() -> int:
    missing = [source for source in PICTURES.values() if not (SCREENSHOTS / source).is_file()]
    if missing:
        print(
            f"{len(missing)} screenshot(s) missing from {SCREENSHOTS}, first {missing[0]}: "
            "run `python -m pytest tests/browser` first (with /usr/bin/chromium installed)",
            file=sys.stderr,
        )
        return 1
    for picture, source in PICTURES.items():
        shutil.copyfile(SCREENSHOTS / source, DOCS / picture)
        print(f"docs/console/{picture} <- {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
