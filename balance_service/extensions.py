"""Extensions, created unbound here and bound to an app in ``create_app``."""

from flask_cors import CORS
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base so models use SQLAlchemy 2.0 ``Mapped[...]`` annotations."""


# No expiry on commit: refreshing an expired object would select every mapped
# column, including deleted_at, which one-api's tables do not have.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
cors = CORS()
