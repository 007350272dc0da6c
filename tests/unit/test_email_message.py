import email
import email.policy

from services.notifier.email_message import AlbumEmail, compose, subject
from shared.contracts.messages import AlbumSettled, FailedImage, UploadedImage
from tests.present import present


def mixed_event() -> AlbumSettled:
    return AlbumSettled(
        album_id="a1",
        settle_seq=1,
        uploaded=[
            UploadedImage(image_id=i, key=f"users/1/p{i}.png", photo_id=f"9{i}")
            for i in range(1, 19)
        ],
        failed=[
            FailedImage(
                image_id=19,
                key="users/1/notes.txt",
                reason="Facebook refused the image: unsupported format (code 324)",
            ),
            FailedImage(image_id=20, key="users/1/huge.png", reason="too large"),
        ],
    )


def test_the_subject_names_the_title_and_the_outcome() -> None:
    assert subject("Summer", 18, 20) == "Your album 'Summer' is on Facebook: 18 of 20 photos"
    assert subject("Summer", 20, 20) == "Your album 'Summer' is on Facebook: all 20 photos"
    assert "could not be published" in subject("Summer", 0, 3)


def test_a_title_cannot_inject_a_header() -> None:
    message = compose(
        AlbumEmail(
            "me@example.com",
            "Album =?UTF-8?Q?=0A?=Bcc: x@evil.example\r\nCc: y@evil.example",
            "http://x/albums/a1",
            mixed_event(),
        ),
        "albums@localhost",
    )
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["Cc"] is None
    assert "Bcc" in parsed["Subject"]


def test_a_mixed_outcome_names_the_failures_in_both_parts() -> None:
    message = compose(
        AlbumEmail("me@example.com", "Summer <b>", "http://x/albums/a1", mixed_event()),
        "albums@localhost",
    )
    text = present(message.get_body(("plain",))).get_content()
    html = present(message.get_body(("html",))).get_content()
    for part in (text, html):
        assert "notes.txt" in part and "unsupported format (code 324)" in part
        assert "huge.png" in part and "p1.png" in part
        assert "http://x/albums/a1" in part
    assert "18 of 20" in text
    assert "Summer &lt;b&gt;" in html


def test_an_album_of_one_photo_is_told_in_the_singular() -> None:
    assert subject("Cat", 1, 1) == "Your album 'Cat' is on Facebook: 1 photo"
    assert subject("Cat", 0, 1) == "Your album 'Cat' could not be published: 0 of 1 photo"
    one = UploadedImage(image_id=1, key="users/1/cat.png", photo_id="91")
    lost = FailedImage(image_id=1, key="users/1/cat.png", reason="too large")
    for uploaded, failed, said in (
        ([one], [], 'The photo of your album "Cat" is now on Facebook.\n\nPublished:'),
        ([], [lost], 'The photo of your album "Cat" could not be published.\n\nThis photo'),
    ):
        event = AlbumSettled(album_id="a1", settle_seq=1, uploaded=uploaded, failed=failed)
        message = compose(AlbumEmail("me@example.com", "Cat", "http://x/a1", event), "a@localhost")
        text = present(message.get_body(("plain",))).get_content()
        html = present(message.get_body(("html",))).get_content()
        assert said in text and "1 photos" not in text and "1 photos" not in html
        assert "The photo" in html
    # One failed among several, one posted: each sentence about them in the singular.
    mixed = AlbumSettled(album_id="a1", settle_seq=1, uploaded=[one], failed=[lost])
    posted = AlbumEmail("me@example.com", "Cat", "http://x/a1", mixed, post_url="http://fb/p")
    message = compose(posted, "a@localhost")
    for part in ("plain", "html"):
        body = present(message.get_body((part,))).get_content()
        assert "these photos" not in body.lower() and "stopped them" not in body, body
        assert "This photo was not published:\n  - " in body or part == "html"
        assert "It is in a post on your Page" in body and "Only this photo is sent again" in body
