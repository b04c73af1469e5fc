from tests.conftest import set_config


def test_enqueue_then_tick_delivers(client, dispatcher, receiver, store):
    set_config(store, base_interval_ms=10)
    response = client.post("/api/v1/tasks", json={"webhookUrl": receiver.url("/a")})
    assert response.status_code == 201
    dispatcher.tick()
    [call] = receiver.wait_for(1)
    assert call.json()["taskId"] == response.json["id"]
    assert client.get(f"/api/v1/tasks/{response.json['id']}").json["status"] == "resolved"
