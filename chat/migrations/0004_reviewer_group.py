"""The "reviewer" group: staff in it may open other people's transcripts and review them.

The permission row is made here rather than left to the post_migrate signal, which runs only after every
migration: this migration must find it to give it to the group.
"""
from django.db import migrations

GROUP = "reviewer"
CODENAME = "review_conversation"


def create_group(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="chat", model="conversation")
    permission, _ = Permission.objects.get_or_create(
        codename=CODENAME, content_type=content_type,
        defaults={"name": "Can review other people's conversations"})
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(permission)


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0003_review_feedback_audit"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
