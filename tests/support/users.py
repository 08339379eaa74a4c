"""A signed-in user by name, for the stores' owner scoping (a2a-sdk keys tasks and push configs by user name)."""

from a2a.auth.user import User


class Named(User):
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self.name
