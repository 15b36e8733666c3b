"""DEVICE: the device and location fields of a sample event, for the event and stream tests."""

DEVICE = {
    "city": "Agawam",
    "zip": "01001",
    "state": "MA",
    "userAgent": "UA",
    "lon": -72.6,
    "lat": 42.1,
}
