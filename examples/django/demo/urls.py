from django.urls import path

from demo import views

urlpatterns = [
    path('', views.index, name='index'),
    path('items/<int:item_id>', views.item, name='item'),
    path('slow', views.slow, name='slow'),
    path('error', views.error, name='error'),
]
