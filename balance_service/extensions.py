"""Extensions, created unbound here and bound to an app in ``create_app``."""

from flask_cors import CORS
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base so models use SQLAlchemy 2.0 ``Mapped[...]`` annotations."""


db = SQLAlchemy(model_class=Base)
cors = CORS()
