"""Request bodies the service cannot take are JSON 4xx answers, never a 500."""

import pytest

# Whether and how this works cannot depend on the database: SQLite only (conftest.py).
pytestmark = pytest.mark.backend_independent

ALERTS = "/v1/user/balance/alerts"


@pytest.mark.parametrize(
    "body",
    [
        "[" * 5000,  # deeper than Python's recursion limit
        '{"threshold": 1e-99999999999999999999, "webhook_url": "https://93.184.215.14/h"}',
        '{"threshold": 1e99999999999999999999, "webhook_url": "https://93.184.215.14/h"}',
        '{"threshold": ',
        "\xff\xfe",
    ],
)
def test_unreadable_json_is_a_400_and_stores_nothing(client, auth, create_token, body):
    key = create_token()
    response = client.post(ALERTS, data=body.encode("latin-1"), headers=auth(key), content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["success"] is False
    assert client.get(ALERTS, headers=auth(key)).get_json()["alerts"] == []


def test_a_body_over_16_kib_is_refused_with_413(client, auth, create_token):
    key = create_token()
    body = '{"threshold": 1, "webhook_url": "https://93.184.215.14/' + "a" * 17000 + '"}'
    response = client.post(ALERTS, data=body, headers=auth(key), content_type="application/json")
    assert response.status_code == 413
    assert response.is_json
    assert response.get_json()["success"] is False
