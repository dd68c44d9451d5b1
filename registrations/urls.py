"""Connect URLs: descriptor, lifecycle callbacks and the app's JWT-protected pages."""

urlpatterns = []
