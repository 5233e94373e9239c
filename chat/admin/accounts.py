"""People, groups and invites: the user list with an "awaiting approval" filter and an Approve action (permission
``chat.approve_account``, the "approver" group), groups, and invite links (``CHAT_SIGNUP``). Locked-out logins are
django-axes' own screens (Access attempts: delete a row to unlock). Writes go through ``chat.accounts.services``,
deleting a person included.

Privileges are a superuser's to give: only superusers change the staff and superuser flags, group memberships,
a user's own permissions and groups' permissions, and only they change or delete a staff account (its password
or email would be the same promotion by another door). Others with "change user" edit people's names and
emails, and see the privileges read-only. Every privilege given or taken away here is an audit row
(``privilege_granted`` / ``privilege_removed``), written in the transaction of the save."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from chat.accounts import selectors, services
from chat.accounts.forms import AdminThrottledPasswordChangeForm
from chat.accounts.selectors import Privileges
from chat.accounts.views import PasswordChange
from chat.models import Conversation, Invite

User = get_user_model()
PRIVILEGE_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")
# Another person's sign-in: whoever could set their password or their email (then ask for reset mail) could sign in
# as them and read their chats, which only the reviewer permission may, audited. A superuser's to change.
CREDENTIAL_FIELDS = ("username", "email")
BEFORE = "_chat_privileges_before"  # set on the object being saved: its privileges as stored before the save


def _superuser(request) -> bool:
    return bool(request.user.is_active and request.user.is_superuser)


def _privileged(user) -> bool:
    return bool(user.is_staff or user.is_superuser)


class ApprovalFilter(admin.SimpleListFilter):
    title = "approval"
    parameter_name = "approval"

    def lookups(self, request, model_admin):
        return [("awaiting", "Awaiting approval"), ("approved", "May chat")]

    def queryset(self, request, queryset):
        # Awaiting: an Account row without approval, and not staff (staff always may chat).
        awaiting = {
            "account__isnull": False,
            "account__approved_at__isnull": True,
            "is_staff": False,
            "is_superuser": False,
        }
        if self.value() == "awaiting":
            return queryset.filter(**awaiting)
        if self.value() == "approved":
            return queryset.exclude(pk__in=User.objects.filter(**awaiting).values("pk"))
        return queryset


class PeopleAdmin(UserAdmin):
    """Django's user admin, plus whether each person may chat and the action that lets them."""

    list_display = (*UserAdmin.list_display, "may_chat")
    list_filter = (ApprovalFilter, *UserAdmin.list_filter)
    list_select_related = ("account",)
    actions = ["approve"]

    @admin.display(description="may chat", boolean=True)
    def may_chat(self, obj):
        account = getattr(obj, "account", None)  # no row: made by staff, approved
        return obj.is_staff or obj.is_superuser or account is None or account.approved_at is not None

    # --- privileges: a superuser's to give, and audited

    def get_readonly_fields(self, request, obj=None):
        # Read-only fields are left out of the form Django builds, so a POST carrying them anyway changes nothing.
        fields = super().get_readonly_fields(request, obj)
        if _superuser(request):
            return fields
        others = obj is not None and obj.pk != request.user.pk
        return (*fields, *PRIVILEGE_FIELDS, *(CREDENTIAL_FIELDS if others else ()))

    def user_change_password(self, request, id, form_url=""):
        """Setting another person's password is a superuser's (their own, anyone may: the throttled form)."""
        if not _superuser(request) and str(id) != str(request.user.pk):
            raise PermissionDenied
        return super().user_change_password(request, id, form_url)

    def has_change_permission(self, request, obj=None):
        if obj is not None and _privileged(obj) and not _superuser(request):
            return False  # their password, email or name: a way into a staff account
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and _privileged(obj) and not _superuser(request):
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        setattr(obj, BEFORE, selectors.privileges_of_user(user_id=obj.pk if change else None))
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)  # groups and permissions are saved here
        user = form.instance
        services.privileges_audit(
            actor=request.user,
            user=user,
            before=getattr(user, BEFORE, Privileges()),
            after=selectors.privileges_of_user(user_id=user.pk),
        )

    # Staff deleting a person (the change page's Delete, the delete_selected action) goes through the same
    # service as the person deleting themselves: their sessions, login records and Redis counters go too, and
    # their open sockets close. The admin has logged the deletion (LogEntry) before it calls these; the service
    # leaves that row their id only.
    def get_deleted_objects(self, objs, request):
        """A summary instead of Django's list of every row that goes: Django would also ask for the permission to
        delete each related model, which the read-only lists (messages, feedback, API keys) refuse everyone, so
        no one with a chat could be deleted here. A person's transcripts go with them, so deleting someone who
        has any takes what deleting a transcript takes: a superuser (chat/admin/conversations.py)."""
        objs = list(objs)
        chats = dict(
            Conversation.objects.filter(owner__in=objs)
            .order_by()
            .values("owner_id")
            .annotate(n=Count("id"))
            .values_list("owner_id", "n")
        )
        listed = [f"{o.get_username()} (#{o.pk}, {chats.get(o.pk, 0)} conversations)" for o in objs]
        perms_needed = set() if self.has_delete_permission(request) else {"user"}
        if chats and not _superuser(request):
            perms_needed.add("conversation")
        if not _superuser(request) and any(_privileged(o) for o in objs):
            perms_needed.add("staff account")  # "Delete selected" asks this, not has_delete_permission(obj)
        return listed, {"people": len(objs), "conversations": sum(chats.values())}, perms_needed, []

    def delete_model(self, request, obj):
        services.account_delete(user_id=obj.pk)

    def delete_queryset(self, request, queryset):
        for user_id in list(queryset.values_list("pk", flat=True)):
            services.account_delete(user_id=user_id)

    def has_approve_permission(self, request):
        return selectors.may_approve(user=request.user)

    @admin.action(description="Approve the selected people (they may chat)", permissions=["approve"])
    def approve(self, request, queryset):
        count = services.account_approve(user_ids=queryset.values_list("pk", flat=True), approved_by=request.user)
        self.message_user(
            request,
            ngettext(
                "Approved %(count)s person; they can chat from their next message on.",
                "Approved %(count)s people; they can chat from their next message on.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )


admin.site.unregister(User)
admin.site.register(User, PeopleAdmin)


class GroupsAdmin(GroupAdmin):
    """Django's groups page, for superusers to change: a group's permissions are every member's, so staff who
    could edit the reviewer group's, or their own group's, would promote themselves. Others may only look."""

    def has_add_permission(self, request):
        return _superuser(request)

    def has_change_permission(self, request, obj=None):
        return _superuser(request)

    def has_delete_permission(self, request, obj=None):
        return _superuser(request)

    def save_model(self, request, obj, form, change):
        setattr(obj, BEFORE, selectors.privileges_of_group(group_id=obj.pk if change else None))
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        group = form.instance
        services.privileges_audit(
            actor=request.user,
            group=group,
            before=getattr(group, BEFORE, Privileges()),
            after=selectors.privileges_of_group(group_id=group.pk),
        )

    def delete_model(self, request, obj):
        self._members_removed(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for group in queryset:
            self._members_removed(request, group)
        super().delete_queryset(request, queryset)

    @staticmethod
    def _members_removed(request, group) -> None:
        """A deleted group takes its members' membership with it: one removal each."""
        for member in group.user_set.all():
            services.privileges_audit(
                actor=request.user, user=member, before=Privileges(groups=frozenset({group.name})), after=Privileges()
            )


admin.site.unregister(Group)
admin.site.register(Group, GroupsAdmin)


class InviteForm(forms.ModelForm):
    valid_days = forms.IntegerField(
        min_value=1,
        max_value=365,
        initial=settings.CHAT_INVITE_DAYS,
        help_text=_("the link stops working after this many days"),
    )

    class Meta:
        model = Invite
        fields = ("email", "note")


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    """Staff create single-use sign-up links here; deleting an unused one revokes it."""

    form = InviteForm
    list_display = ("__str__", "note", "state", "expires_at", "created_by", "used_by", "used_at")
    list_select_related = ("created_by", "used_by")
    readonly_fields = ("path", "email", "note", "created_by", "created_at", "expires_at", "used_by", "used_at")

    def get_fields(self, request, obj=None):
        return ("email", "note", "valid_days") if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def has_change_permission(self, request, obj=None):
        return False  # an invite is made once; to change one, delete it and make another

    def get_list_display(self, request):
        def link(obj):
            return request.build_absolute_uri(self._path(obj))

        link.short_description = "invite link"
        return (*self.list_display[:1], link, *self.list_display[1:])

    @staticmethod
    def _path(obj) -> str:
        return reverse("signup-invite", args=[obj.token])

    @admin.display(description="link (on this site)")
    def path(self, obj):
        return self._path(obj)

    @admin.display(description="state")
    def state(self, obj):
        if obj.used_at:
            return "used"
        return "expired" if obj.expires_at <= timezone.now() else "unused"

    def save_model(self, request, obj, form, change):
        created = services.invite_create(
            created_by=request.user,
            email=form.cleaned_data.get("email", ""),
            note=form.cleaned_data.get("note", ""),
            days=form.cleaned_data["valid_days"],
        )
        vars(obj).update(vars(created))  # the admin's own messages and redirect use this object

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(
            request,
            f"Send this link to the person (it works once, until "
            f"{obj.expires_at:%Y-%m-%d %H:%M} UTC): "
            f"{request.build_absolute_uri(self._path(obj))}",
            messages.SUCCESS,
        )
        return super().response_add(request, obj, post_url_continue)


def password_change(request):
    """The admin's own "Change password" page (chatsite/urls.py puts it before the admin's), its old password
    checked as a login is, like the Account page's: Django's admin checks it directly, unthrottled."""
    request.current_app = admin.site.name
    return PasswordChange.as_view(
        form_class=AdminThrottledPasswordChangeForm,
        success_url=reverse("admin:password_change_done"),
        extra_context=admin.site.each_context(request),
    )(request)
