"""A module whose own code fails at import, as a typo in an agent would."""

import this_package_does_not_exist  # noqa: F401
