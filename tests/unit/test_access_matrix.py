"""Every route of the app, as the owner of what its path names, as another signed-in user and
as a stranger (issue 11's access matrix).

The owner gets a success or a validation answer; another user gets 404 for the owner's things
(never a 200, never a byte of the owner's data) and only their own data elsewhere; a stranger
gets 401 with WWW-Authenticate on the JSON API, and the sign-in page on the web pages (a POST:
401). The JSON API is called with a bearer token, the pages with the session cookie, and each
also with the other credential alone, which it must not take. A route missing from MATRIX
fails the test: a new route cannot escape it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from dev.images import png
from services.api.fake_page_albums import FakePageAlbums
from services.api.sessions import COOKIE_NAME
from shared.contracts import messages, topology
from shared.contracts.dead_letters import dead_letter
from shared.store import Store, UserView
from tests.unit import stores
from tests.unit.test_web import REFUSED, Env, csrf, make_env, seeded_env, sign_in

ANN_PAGE = ("2000000000000002", "Ann's Secret Page")
ANN_TITLE = "Ann's secret trip"


@dataclass
class World:
    """Ann owns an album (one photo failed, its dead letter indexed), a photo in the bucket and
    a connected Page, and is an operator (the desk's routes are hers); Bob has an account and
    nothing of hers, and is an end user (403 on the desk)."""

    env: Env
    bob: UserView
    bob_token: str
    album_id: str
    key: str
    letter_id: str = ""

    @property
    def ann(self) -> UserView:
        return self.env.user

    def secrets(self) -> list[str]:
        """What of Ann's must never reach Bob or a stranger."""
        return [
            self.album_id,
            ANN_TITLE,
            self.key,
            ANN_PAGE[1],
            "Ann&#39;s Secret Page",
            "Ann&#39;s secret trip",
            "secret album",
            self.ann.email,
        ]


@dataclass(frozen=True)
class _Saved:
    """The world's rows and what the tests know of them, as the first test built them."""

    rows: sqlite3.Connection
    ann: tuple[UserView, str]
    bob: tuple[UserView, str]
    album_id: str
    key: str
    letter_id: str


#: The world as built once (building it was most of each test's time: a dozen writes).
_SAVED: list[_Saved] = []


@pytest.fixture()
def world() -> World:
    if _SAVED:
        saved = _SAVED[0]

        def seed(store: Store) -> tuple[UserView, str]:
            stores.restore(store, saved.rows)
            return saved.ann

        env = _env(seed)
        env.put(saved.key, png(16, 16))
        return World(env, *saved.bob, saved.album_id, saved.key, saved.letter_id)
    world = _build_world(_env(None))
    _SAVED.append(
        _Saved(
            stores.snapshot(world.env.store),
            (world.env.user, world.env.token),
            (world.bob, world.bob_token),
            world.album_id,
            world.key,
            world.letter_id,
        )
    )
    return world


def _env(seed: Callable[[Store], tuple[UserView, str]] | None) -> Env:
    env = seeded_env(seed, api_sse_max_s=1.0) if seed else make_env(api_sse_max_s=1.0)
    # The Page's albums without Facebook: one secret album on Ann's Page.
    env.services._page_albums = FakePageAlbums(
        {ANN_PAGE[0]: [{"id": "314159", "name": "Ann's secret album"}]}
    )
    return env


def _build_world(env: Env) -> World:
    key = f"{env.user.prefix}trip/beach.png"
    env.put(key, png(16, 16))
    album_id = env.store.create_album(env.user.id, ANN_TITLE, None, [key, f"{key}.2"])[0]
    failed = env.image_ids(album_id)[1]
    env.store.start_attempt(failed)
    letter = dead_letter(
        topology.IMAGE_UPLOADS,
        messages.encode(
            messages.ImageUploadRequested(album_id=album_id, image_id=failed, key=f"{key}.2")
        ),
        {},
        REFUSED,
        324,
        1,
    )
    env.store.record_failed(failed, REFUSED, 324, letter)
    env.store.set_role(env.user.email, "operator")
    env.store.connect_page(env.user.id, *ANN_PAGE, env.services.cipher.encrypt("ann-token"))
    bob, bob_token = env.store.create_user("bob@example.com")
    return World(env, bob, bob_token, album_id, key, letter.message_id)


# -- how each route is called --------------------------------------------------------------------

API, PAGE, PUBLIC = "api", "page", "public"
OWNER_OK = frozenset({200, 202, 302, 303})
#: What an end user gets on the operators' desk.
_END_USER = frozenset({403})


@dataclass(frozen=True)
class Call:
    """One route: how to call it for Ann's things, and what each caller may get back."""

    kind: str
    path: Callable[[World], str]
    body: Callable[[World], dict[str, Any]] | None = None
    #: The owner's answers: a success, or the validation answer a bare call gets.
    owner: frozenset[int] = OWNER_OK
    #: Another user's answers: 404 where the path names Ann's things; elsewhere the route
    #: answers about Bob's own (the owner's statuses) or refuses Ann's things in the body.
    other: frozenset[int] = frozenset({404})
    #: Before the call, in the caller's own session (a route that needs a step before it).
    prepare: Callable[[FlaskClient, World], str] | None = None
    #: After another user's call: Ann's things are as they were.
    untouched: Callable[[World], bool] = field(default=lambda world: True)


def _album(world: World) -> str:
    return world.album_id


def _ann_state(client: FlaskClient, world: World) -> str:
    """Start Facebook Login in this session: the callback's state, signed for its user."""
    dialog = client.get("/connect/facebook")
    return parse_qs(urlsplit(dialog.location).query)["state"][0]


def _failed_left(world: World) -> bool:
    album = world.env.store.album(world.album_id)
    return album is not None and any(image.state == "failed" for image in album.images)


def _letter_waiting(world: World) -> bool:
    letter = world.env.store.dead_letter(world.letter_id)
    return letter is not None and letter.state == "waiting" and _failed_left(world)


def _page_left(world: World) -> bool:
    return world.env.store.page(world.ann.id) is not None


MATRIX: dict[tuple[str, str], Call] = {
    ("api.publish_album", "POST"): Call(
        API,
        lambda w: "/api/albums",
        lambda w: {"title": "Mine", "images": [w.key]},
        owner=frozenset({202}),
        other=frozenset({422}),
    ),
    ("api.list_albums", "GET"): Call(API, lambda w: "/api/albums", other=OWNER_OK),
    ("api.get_album", "GET"): Call(API, lambda w: f"/api/albums/{w.album_id}"),
    ("api.retry_album", "POST"): Call(
        API, lambda w: f"/api/albums/{w.album_id}/retry", untouched=_failed_left
    ),
    ("api.list_images", "GET"): Call(API, lambda w: "/api/images", other=OWNER_OK),
    ("api.get_page", "GET"): Call(API, lambda w: "/api/page", other=OWNER_OK),
    ("api.list_page_albums", "GET"): Call(API, lambda w: "/api/page/albums", other=OWNER_OK),
    ("api.openapi", "GET"): Call(PUBLIC, lambda w: "/api/openapi.json"),
    ("api.healthz", "GET"): Call(PUBLIC, lambda w: "/healthz"),
    ("api.readyz", "GET"): Call(PUBLIC, lambda w: "/readyz"),
    ("web.home", "GET"): Call(PAGE, lambda w: "/", other=OWNER_OK),
    ("web.login", "GET"): Call(PUBLIC, lambda w: "/login"),
    # Signing in again is a success; a stranger's bad token is the form's own 401.
    ("web.login", "POST"): Call(
        PUBLIC, lambda w: "/login", lambda w: {"token": w.env.token}, owner=frozenset({303, 401})
    ),
    ("web.logout", "POST"): Call(PUBLIC, lambda w: "/logout", lambda w: {}, owner=frozenset({303})),
    ("web.new_album", "GET"): Call(PAGE, lambda w: "/albums/new", other=OWNER_OK),
    ("web.publish_album", "POST"): Call(
        PAGE,
        lambda w: "/albums/new",
        lambda w: {"title": "Mine", "images": [w.key]},
        other=frozenset({422}),
    ),
    ("web.albums", "GET"): Call(PAGE, lambda w: "/albums", other=OWNER_OK),
    ("web.album_page", "GET"): Call(PAGE, lambda w: f"/albums/{w.album_id}"),
    ("web.retry", "POST"): Call(
        PAGE, lambda w: f"/albums/{w.album_id}/retry", lambda w: {}, untouched=_failed_left
    ),
    ("web.album_events", "GET"): Call(PAGE, lambda w: f"/albums/{w.album_id}/events"),
    ("web.thumbnail", "GET"): Call(PAGE, lambda w: f"/thumbnails/{w.key}"),
    ("connect.start", "GET"): Call(PAGE, lambda w: "/connect/facebook", other=OWNER_OK),
    # The state is Ann's: Bob's session did not start that login (a 400 with its reason).
    ("connect.callback", "GET"): Call(
        PAGE,
        lambda w: "/connect/facebook/callback?error=access_denied&state={state}",
        other=frozenset({400}),
        prepare=_ann_state,
    ),
    # Nothing was offered in this session to pick from: the form's own 400.
    ("connect.pick", "POST"): Call(
        PAGE,
        lambda w: "/connect/facebook/pick",
        lambda w: {"page_id": ANN_PAGE[0]},
        owner=frozenset({400}),
        other=frozenset({400}),
    ),
    ("connect.disconnect", "POST"): Call(
        PAGE,
        lambda w: "/connect/facebook/disconnect",
        lambda w: {},
        other=frozenset({303}),
        untouched=_page_left,
    ),
    # The dead-letter desk: Ann is an operator, Bob an end user (403 on every route).
    ("desk.dead_letters", "GET"): Call(PAGE, lambda w: "/operator/dead-letters", other=_END_USER),
    ("desk.group", "GET"): Call(
        PAGE, lambda w: "/operator/dead-letters/groups/refused?code=324", other=_END_USER
    ),
    ("desk.group_action", "POST"): Call(
        PAGE,
        lambda w: "/operator/dead-letters/groups/refused/purge",
        lambda w: {"code": "324"},
        other=_END_USER,
        untouched=_letter_waiting,
    ),
    ("desk.letter", "GET"): Call(
        PAGE, lambda w: f"/operator/dead-letters/{w.letter_id}", other=_END_USER
    ),
    ("desk.letter_action", "POST"): Call(
        PAGE,
        lambda w: f"/operator/dead-letters/{w.letter_id}/replay",
        lambda w: {},
        other=_END_USER,
        untouched=_letter_waiting,
    ),
    ("desk.album_action", "POST"): Call(
        PAGE,
        lambda w: f"/operator/albums/{w.album_id}/replay",
        lambda w: {},
        other=_END_USER,
        untouched=_letter_waiting,
    ),
    ("desk.stuck", "GET"): Call(PAGE, lambda w: "/operator/stuck", other=_END_USER),
}


def _routes(world: World) -> set[tuple[str, str]]:
    """(endpoint, method) of every route but the static files, and HEAD/OPTIONS (Flask's own,
    checked apart below)."""
    return {
        (rule.endpoint, method)
        for rule in world.env.app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }


def _call(
    world: World,
    route: Call,
    method: str,
    client: FlaskClient,
    *,
    bearer: str | None,
    as_owner: bool,
    state_from: FlaskClient | None = None,
) -> TestResponse:
    path = route.path(world)
    if route.prepare is not None:
        # A stranger cannot start the step (it needs a sign-in): a made-up value stands in.
        signed = state_from is not None or as_owner
        path = path.format(state=route.prepare(state_from or client, world) if signed else "x")
    headers = {"Accept": "text/html"} if route.kind != API else {}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    body = route.body(world) if route.body else None
    if method == "GET" or method == "HEAD":
        return client.open(path, method=method, headers=headers)
    if route.kind == API:
        response = client.open(path, method=method, headers=headers, json=body)
    else:
        form = {**(body or {}), "csrf_token": csrf_of_session(client)}
        response = client.open(path, method=method, headers=headers, data=form)
    _SENT[id(response)] = repr(body)
    return response


#: The body each answer was to (read back from the request once answered, it is gone).
_SENT: dict[int, str] = {}


def csrf_of_session(client: FlaskClient) -> str:
    """The CSRF token of the client's session (a stranger's too: the sign-in page made one)."""
    with client.session_transaction() as session:
        token = session.get("csrf")
    if token is None:
        client.get("/login")
        with client.session_transaction() as session:
            token = session["csrf"]
    return str(token)


def _signed_in(world: World, token: str) -> FlaskClient:
    """A client signed in with `token`, holding its session's CSRF token as a page would. The
    first sign-in of each user goes through the sign-in page; later tests take the cookie it
    made (its users' rows, generation included, come back the same from the snapshot, and
    signing in writes nothing), which saves three requests a client."""
    client = world.env.app.test_client()
    if token in _SESSIONS:
        client.set_cookie(COOKIE_NAME, _SESSIONS[token])
        return client
    assert sign_in(client, token).status_code == 303
    csrf(client)
    cookie = client.get_cookie(COOKIE_NAME)
    assert cookie is not None
    _SESSIONS[token] = cookie.value
    return client


#: The session cookie of each user's first sign-in, by their token.
_SESSIONS: dict[str, str] = {}


def _leaks(world: World, response: TestResponse) -> list[str]:
    """Ann's secrets in the answer, but for those the caller sent itself (the path it asked
    for, echoed in a sign-in link; the keys of a refused body, named in its reason)."""
    sent = response.request.full_path + _SENT.get(id(response), "")
    text = response.get_data(as_text=True) + str(response.headers)
    return [secret for secret in world.secrets() if secret in text and secret not in sent]


# -- the matrix ----------------------------------------------------------------------------------

PROTECTED = sorted(key for key, route in MATRIX.items() if route.kind != PUBLIC)


def test_every_route_is_in_the_matrix(world: World) -> None:
    assert _routes(world) == set(MATRIX), (
        "add each new route to MATRIX (and drop the gone ones): "
        f"unlisted {sorted(_routes(world) - set(MATRIX))}, "
        f"gone {sorted(set(MATRIX) - _routes(world))}"
    )


@pytest.mark.parametrize(("endpoint", "method"), PROTECTED)
def test_a_stranger_is_sent_to_sign_in(world: World, endpoint: str, method: str) -> None:
    route = MATRIX[(endpoint, method)]
    for client_token in (None, "not-a-token"):
        response = _call(
            world, route, method, world.env.app.test_client(), bearer=client_token, as_owner=False
        )
        _assert_refused(world, route, method, response)
    assert route.untouched(world)


PAGE_POSTS = [key for key in PROTECTED if key[1] == "POST" and MATRIX[key].kind == PAGE]


@pytest.mark.parametrize(("endpoint", "method"), PAGE_POSTS)
def test_a_strangers_form_post_without_any_cookie_is_a_401(
    world: World, endpoint: str, method: str
) -> None:
    """A stranger who never opened a page has no session, so no CSRF token either: still the
    documented 401 (not the 400 of an expired form, which is for a session's bad token)."""
    route = MATRIX[(endpoint, method)]
    path = route.path(world).format(state="x")
    client = world.env.app.test_client()
    body = route.body(world) if route.body else {}
    response = client.post(path, headers={"Accept": "text/html"}, data=body)
    assert response.status_code == 401, response.get_data(as_text=True)[:300]
    assert client.get_cookie(COOKIE_NAME) is None  # no session was made for the stranger
    assert _leaks(world, response) == []
    assert route.untouched(world)


@pytest.mark.parametrize(("endpoint", "method"), PROTECTED)
def test_the_other_credential_alone_is_refused(world: World, endpoint: str, method: str) -> None:
    """The JSON API takes no cookie (it has no CSRF token to check); the pages take no bearer."""
    route = MATRIX[(endpoint, method)]
    if route.kind == API:
        client, bearer = _signed_in(world, world.env.token), None
    else:
        client, bearer = world.env.app.test_client(), world.env.token
    response = _call(world, route, method, client, bearer=bearer, as_owner=False)
    _assert_refused(world, route, method, response)


def _assert_refused(world: World, route: Call, method: str, response: TestResponse) -> None:
    if route.kind == API:
        assert response.status_code == 401, response.get_data(as_text=True)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    elif method == "GET":
        assert response.status_code == 302
        assert urlsplit(response.location).path == "/login"
    else:
        assert response.status_code == 401, response.get_data(as_text=True)
    assert _leaks(world, response) == []


@pytest.mark.parametrize(("endpoint", "method"), sorted(MATRIX))
def test_another_user_gets_none_of_the_owners_things(
    world: World, endpoint: str, method: str
) -> None:
    route = MATRIX[(endpoint, method)]
    bob = _signed_in(world, world.bob_token)
    ann = _signed_in(world, world.env.token)
    response = _call(
        world,
        route,
        method,
        bob,
        bearer=world.bob_token if route.kind == API else None,
        as_owner=False,
        state_from=ann,
    )
    allowed = route.owner if route.kind == PUBLIC else route.other
    assert response.status_code in allowed, response.get_data(as_text=True)[:500]
    if route.kind != PUBLIC:
        assert _leaks(world, response) == []
    assert route.untouched(world)


@pytest.mark.parametrize(("endpoint", "method"), sorted(MATRIX))
def test_the_owner_gets_an_answer(world: World, endpoint: str, method: str) -> None:
    route = MATRIX[(endpoint, method)]
    ann = _signed_in(world, world.env.token)
    response = _call(
        world,
        route,
        method,
        ann,
        bearer=world.env.token if route.kind == API else None,
        as_owner=True,
    )
    assert response.status_code in route.owner, response.get_data(as_text=True)[:500]


@pytest.mark.parametrize(
    ("endpoint", "method"), sorted(key for key, route in MATRIX.items() if route.kind == PUBLIC)
)
def test_public_routes_answer_a_stranger(world: World, endpoint: str, method: str) -> None:
    route = MATRIX[(endpoint, method)]
    response = _call(world, route, method, world.env.app.test_client(), bearer=None, as_owner=False)
    assert response.status_code in route.owner
    assert _leaks(world, response) == []


def test_the_owner_sees_their_things(world: World) -> None:
    """The other rows' "no leak" means something: the owner's answers do carry the secrets."""
    auth = {"Authorization": f"Bearer {world.env.token}"}
    client = world.env.app.test_client()
    assert world.album_id in client.get("/api/albums", headers=auth).get_data(as_text=True)
    assert ANN_PAGE[1] in client.get("/api/page", headers=auth).get_data(as_text=True)
    assert world.key in client.get("/api/images", headers=auth).get_data(as_text=True)
    page = _signed_in(world, world.env.token).get(f"/albums/{world.album_id}")
    assert "Ann&#39;s secret trip" in page.get_data(as_text=True)


@pytest.mark.parametrize(("endpoint", "method"), [key for key in PROTECTED if key[1] == "GET"])
def test_head_is_checked_like_get(world: World, endpoint: str, method: str) -> None:
    route = MATRIX[(endpoint, method)]
    stranger = _call(world, route, "HEAD", world.env.app.test_client(), bearer=None, as_owner=False)
    assert stranger.status_code == (401 if route.kind == API else 302)
    if route.prepare is None:
        bob = _call(
            world,
            route,
            "HEAD",
            _signed_in(world, world.bob_token),
            bearer=world.bob_token if route.kind == API else None,
            as_owner=False,
        )
        assert bob.status_code in route.other


def test_options_tells_only_the_methods(world: World) -> None:
    client = world.env.app.test_client()
    for rule in world.env.app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = (
            MATRIX[(rule.endpoint, sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})[0])]
            .path(world)
            .format(state="x")
        )
        response = client.options(path)
        assert response.status_code == 200 and response.get_data() == b""
