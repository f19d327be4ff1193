"""live3dpe.webapp: the browser front ends.

`live3dpe serve` (server.py, static/, protocol.py): a WebRTC demo where the page sends the
camera and gets the edited stream back, driven over a data channel. `live3dpe ui`
(gradio_app.py, portrait.py, customize.py, styles.py): a local gradio editor for single
portraits, style customization and a quick webcam try. rtc_client.py is a Python client for
the WebRTC server (tests, scripts).
"""
