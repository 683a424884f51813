"""The HTTP API: sign up, log in, write and publish articles, tag, comment, search.

Build the database with ``alembic upgrade head`` (after ``CREATE EXTENSION pg_trgm``
in it), then run ``uvicorn library_app.main:app``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Query, status
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import get_db
from .models import Article, Comment, Tag, Token, User
from .schemas import (
    ArticleCreate,
    ArticleRead,
    CommentCreate,
    CommentRead,
    Login,
    SearchHit,
    SignUp,
    TagNames,
    TokenRead,
    UserRead,
)
from .security import hash_password, new_token, verify_password

app = FastAPI(title="Library API")

DB = Annotated[Session, Depends(get_db)]


def current_user(db: DB, authorization: Annotated[str | None, Header()] = None) -> User:
    """The user whose token is sent as ``Authorization: Bearer <token>``; else 401."""
    scheme, _, value = (authorization or "").partition(" ")
    token = db.get(Token, value) if scheme.lower() == "bearer" and value else None
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "not logged in",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.user


CurrentUser = Annotated[User, Depends(current_user)]


def tags_named(db: Session, names: list[str]) -> list[Tag]:
    """The tags of these names, created when missing."""
    wanted = sorted({name.strip().lower() for name in names if name.strip()})
    existing = {tag.name: tag for tag in db.scalars(select(Tag).where(Tag.name.in_(wanted)))}
    for name in wanted:
        if name not in existing:
            existing[name] = Tag(name=name)
            db.add(existing[name])
    return [existing[name] for name in wanted]


def article_read(article: Article) -> ArticleRead:
    return ArticleRead(
        id=article.id,
        title=article.title,
        body=article.body,
        published=article.published,
        created_at=article.created_at,
        author=UserRead.model_validate(article.author),
        tags=[tag.name for tag in article.tags],
    )


def visible_article(db: Session, article_id: int, user: User | None = None) -> Article:
    """A published article, or any article of ``user``'s; else 404."""
    article = db.get(Article, article_id)
    if article is None or not (article.published or (user and article.author_id == user.id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"article {article_id} not found")
    return article


@app.post("/users", response_model=UserRead, status_code=status.HTTP_201_CREATED)
def sign_up(body: SignUp, db: DB) -> User:
    user = User(
        email=body.email.lower(),
        display_name=body.display_name or body.email.split("@")[0],
        password_hash=hash_password(body.password),
    )
    db.add(user)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, "email already registered") from None
    return user


@app.post("/login", response_model=TokenRead)
def login(body: Login, db: DB) -> TokenRead:
    user = db.scalar(select(User).where(User.email == body.email.lower()))
    if user is None or not verify_password(body.password, user.password_hash):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong email or password")
    token = Token(token=new_token(), user_id=user.id)
    db.add(token)
    db.commit()
    return TokenRead(access_token=token.token)


@app.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(db: DB, user: CurrentUser, authorization: Annotated[str, Header()]) -> None:
    token = db.get(Token, authorization.partition(" ")[2])
    db.delete(token)
    db.commit()


@app.get("/me", response_model=UserRead)
def me(user: CurrentUser) -> User:
    return user


@app.post("/articles", response_model=ArticleRead, status_code=status.HTTP_201_CREATED)
def create_article(body: ArticleCreate, db: DB, user: CurrentUser) -> ArticleRead:
    article = Article(
        author=user,
        title=body.title,
        body=body.body,
        published=body.published,
        tags=tags_named(db, body.tags),
    )
    db.add(article)
    db.commit()
    return article_read(article)


@app.get("/articles", response_model=list[ArticleRead])
def list_articles(db: DB, tag: str | None = None) -> list[ArticleRead]:
    """Published articles, newest first; ``?tag=`` for those with that tag."""
    query = select(Article).where(Article.published).order_by(Article.id.desc())
    if tag is not None:
        query = query.where(Article.tags.any(Tag.name == tag.lower()))
    return [article_read(article) for article in db.scalars(query)]


@app.get("/articles/{article_id}", response_model=ArticleRead)
def get_article(
    article_id: int, db: DB, authorization: Annotated[str | None, Header()] = None
) -> ArticleRead:
    user = current_user(db, authorization) if authorization else None
    return article_read(visible_article(db, article_id, user))


@app.post("/articles/{article_id}/publish", response_model=ArticleRead)
def publish(article_id: int, db: DB, user: CurrentUser) -> ArticleRead:
    article = visible_article(db, article_id, user)
    if article.author_id != user.id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only the author may publish")
    article.published = True
    db.commit()
    return article_read(article)


@app.post("/articles/{article_id}/tags", response_model=ArticleRead)
def tag_article(article_id: int, body: TagNames, db: DB, user: CurrentUser) -> ArticleRead:
    article = visible_article(db, article_id, user)
    if article.author_id != user.id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only the author may tag")
    known = {tag.name for tag in article.tags}
    article.tags.extend(tag for tag in tags_named(db, body.names) if tag.name not in known)
    db.commit()
    db.refresh(article)
    return article_read(article)


@app.get("/tags", response_model=list[str])
def list_tags(db: DB) -> list[str]:
    return list(db.scalars(select(Tag.name).order_by(Tag.name)))


@app.post(
    "/articles/{article_id}/comments",
    response_model=CommentRead,
    status_code=status.HTTP_201_CREATED,
)
def comment(article_id: int, body: CommentCreate, db: DB, user: CurrentUser) -> Comment:
    article = visible_article(db, article_id, user)
    comment = Comment(article=article, author=user, body=body.body)
    db.add(comment)
    db.commit()
    return comment


@app.get("/articles/{article_id}/comments", response_model=list[CommentRead])
def list_comments(article_id: int, db: DB) -> list[Comment]:
    return visible_article(db, article_id).comments


@app.get("/search", response_model=list[SearchHit])
def search(db: DB, q: Annotated[str, Query(min_length=2)]) -> list[SearchHit]:
    """Published articles whose title is like ``q``, best first.

    ``title % q`` is pg_trgm's similarity operator (similarity above
    ``pg_trgm.similarity_threshold``, 0.3 by default), served by the trigram index.
    """
    score = func.similarity(Article.title, q)
    rows = db.execute(
        select(Article.id, Article.title, score.label("score"))
        .where(Article.published, Article.title.op("%")(q))
        .order_by(score.desc(), Article.id)
    )
    return [SearchHit(id=row.id, title=row.title, score=row.score) for row in rows]
